import json, statistics as st, os
R = 'raw'
CLEAN = os.environ.get('CLEAN') == '1'
from pollution import polluted
POL = polluted()
ROUNDS = [int(x) for x in os.environ.get('ROUNDS', '1,2,3,4,5,6').split(',')]
def load(name, impl):
    out = {}
    for r in ROUNDS:
        p = f'{R}/{name}_{impl}_r{r}.jsonl'
        if CLEAN and POL.get((name, impl, r), 1): continue
        if os.path.exists(p): out[r] = [json.loads(l) for l in open(p) if l.strip()]
    return out
def table(title, name, keyf, metrics):
    O, N = load(name, 'old'), load(name, 'new')
    if not O or not N: return
    print(f'\n### {title}\n')
    print('| shape | metric | old median | new median | ratio old/new | old spread | new spread | per-round ratios | rounds | >= 0.97 |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    keys = [keyf(d) for d in next(iter(O.values()))]
    for k in keys:
        for label, f, is_time in metrics:
            val = lambda runs: {r: d[f] for r, run in runs.items() for d in run if keyf(d) == k}
            ov, nv = val(O), val(N)
            om, nm = st.median(ov.values()), st.median(nv.values())
            ratio = (om / nm) if is_time else (nm / om)
            rr = sorted(set(ov) & set(nv))
            pr = [(ov[r] / nv[r]) if is_time else (nv[r] / ov[r]) for r in rr]
            sp = lambda v: (max(v) - min(v)) / st.median(v) * 100
            fmt = lambda x: f'{x:.2f}' if x < 10 else f'{x:.1f}'
            print(f'| {k} | {label} | {fmt(om)} | {fmt(nm)} | **{ratio:.3f}** | {sp(list(ov.values())):.1f}% | {sp(list(nv.values())):.1f}% | '
                  f'{" / ".join(f"{p:.2f}" for p in pr)} | {len(ov)}+{len(nv)} | {"yes" if ratio >= 0.97 else "**no**"} |')
tr = [('step ms', 'median_ms', 1), ('fwd+bwd ms', 'fwd_bwd_ms', 1), ('zero+clip+AdamW ms', 'zero_clip_adamw_ms', 1)]
table('GPT-2 124M training step, 2 threads', 'train2', lambda d: f"{d['B']}x{d['T']} t{d['threads']}", tr)
table('GPT-2 124M training step, 1 thread', 'train1', lambda d: f"{d['B']}x{d['T']} t{d['threads']}", tr)
table('Generation (prompt 128, 128 new tokens, 2 threads)', 'generate', lambda d: d['model'],
      [('prefill tok/s', 'prefill_tok_s', 0), ('decode tok/s', 'decode_tok_s', 0)])
table('MiniLM-L6 sentence embeddings', 'embed', lambda d: f"B{d['batch']} T{d['seq']} t{d['threads']}", [('ms/batch', 'ms', 1)])
table('Generation, GPT-2 only, extra pairs (--only gpt2)', 'gengpt2', lambda d: d['model'],
      [('prefill tok/s', 'prefill_tok_s', 0), ('decode tok/s', 'decode_tok_s', 0)])
