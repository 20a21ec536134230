#!/usr/bin/env python3
"""gen_spm_fixtures.py — SentencePiece-style tokenizers and their expected encodings, from
Hugging Face `tokenizers`, `transformers` and Google's `sentencepiece`, for
tests/test_tokenizer_spm.c. Writes tests/fixtures/tokenizer/spm/.

    tools/.venv/bin/python tools/gen_spm_fixtures.py

Everything is trained here, offline, on the Debian license texts (/usr/share/common-licenses,
files sorted by name, concatenated) — no downloaded model:

  unigram/     HF UnigramTrainer (vocab 800): NFKC, Metaspace (prepend always, split),
               TemplateProcessing "$A </s>", Metaspace decoder.
  unigram_bf/  the same vocabulary plus the 256 <0xNN> byte pieces and byte_fallback: true;
               normalizer Sequence[NFKC, Strip(left, right)], Metaspace (prepend first, no
               split); decoder Sequence[Replace, ByteFallback, Fuse, Strip] (Llama's).
  legacy/      the same vocabulary with Sequence[NFKD, Lowercase, NFC, Prepend, Replace " "]
               and no pre-tokenizer; decoder Sequence[Replace, Fuse, Strip(2, 0)].
  never/       the same vocabulary with NFD and Metaspace prepend_scheme "never" (and decoder).
  t5/          a sentencepiece unigram model (vocab 1000, nmt_nfkc normalization: the
               precompiled charsmap) converted by transformers' T5Tokenizer: Precompiled,
               Sequence[WhitespaceSplit, Metaspace], "$A </s>", Metaspace decoder.
  spmconv/     the same spm model through transformers' generic SpmConverter: normalizer
               Sequence[Precompiled, Strip(right), Replace(Regex " {2,}", "▁")].
  llama/       a sentencepiece BPE model with byte_fallback (vocab 600) converted by
               transformers' LlamaTokenizer (legacy=False): BPE + byte_fallback, Metaspace
               (first, no split), decoder Sequence[Replace, ByteFallback, Fuse, Strip].
  llama_nobf/  the same without byte_fallback (and no unk_token): unknown chars are dropped.
  marian/      source.spm = target.spm = the unigram spm model and a vocab.json laid out as
               OPUS-MT's (</s> 0, <unk> 1, the pieces, >>de<< and >>fr<< codes, <pad> last);
               expectations from transformers' MarianTokenizer (without sacremoses).
  spm_uni.model, spm_bpe.model: the two spm files; expectations from sentencepiece itself.
Also writes the seeds of fuzz/fuzz_spm.c (fuzz/spm_seeds/: two tiny models with a charsmap of
a few rules, and those charsmaps alone).

tokenizers' UnigramTrainer is not deterministic (unigram/ changes from run to run); the
expectations are always written from the tokenizer.json written in the same run.

Per tokenizer NAME, expect.NAME.jsonl has one line per text of texts.txt (one JSON string a
line): ids of the single encoding (special tokens added), ids of the pair (text, next text),
decode(ids, skip_special_tokens=True) and decode(ids) keeping them; for the tokenizer.json
files also the code point offsets of the single encoding.
"""
import json
import os
import shutil
import tempfile


import sentencepiece as spm
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "spm")
LICENSES = "/usr/share/common-licenses"

HAND = [
    "Hello world!",
    "  leading and trailing spaces  ",
    "runs    of     spaces\tand\ttabs\nand a newline",
    "Ünïcödé àccents: café, naïve, Ångström, Øresund, Straße",
    "combining: e\u0301 a\u0300 o\u0308 n\u0303 (decomposed)",
    "full width: ＡＢＣ１２３ ｈｅｌｌｏ！ and ligatures: ﬁne ﬂow ﬀ",
    "CJK: 日本語のテキスト 中文文本 한국어 텍스트",
    "emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇩🇪 ❤️",
    "unknown chars: ☃ ♞ ∰ ⊛ ꙮ 𓀀 ᚠᛇᚻ",
    "a long word: Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
    "supercalifragilisticexpialidocious" * 3,
    "numbers 1234567890 3.14159 1,000,000 ½ ² ①",
    "punctuation: «quotes» „German“ ‘single’ — dash … ellipsis",
    "no-break\u00a0space, thin\u2009space, ideographic\u3000space, zero\u200bwidth",
    "control \u0007 bell \u001b escape \u00ad soft hyphen",
    "special tokens in text: </s> and <unk> and <pad> inside",
    ">>de<< This sentence has a Marian language code.",
    ">>fr<< Une phrase française avec des accents.",
    "",
    " ",
    "x",
    "GNU GENERAL PUBLIC LICENSE Version 3, 29 June 2007",
    "Ελληνικά κείμενο και русский текст и עברית ועוד العربية",
    "Roman numeral Ⅻ, kelvin K, angstrom Å, ohm Ω, micro µ",
    "<0x41> looks like a byte token",
    "tab\tat\tthe end\t",
    "trailing newline\n",
    "\u2581 the meta symbol itself \u2581\u2581",
]


def corpus_lines():
    lines = []
    for f in sorted(os.listdir(LICENSES)):
        p = os.path.join(LICENSES, f)
        if os.path.isfile(p) and not os.path.islink(p):
            with open(p, encoding="utf-8", errors="replace") as fh:
                lines.extend(l.rstrip("\n") for l in fh)
    return lines


def texts(lines):
    sample = [l for l in lines[::37] if l.strip()][:160]
    return HAND + sample


def write_expect(name, tx, single, pair, decode, offsets=None):
    with open(os.path.join(FIX, "expect.%s.jsonl" % name), "w", encoding="utf-8") as f:
        for i, t in enumerate(tx):
            ids = single(t)
            rec = {"i": i, "ids": ids, "pair": pair(t, tx[(i + 1) % len(tx)]),
                   "skip": decode(ids, True), "keep": decode(ids, False)}
            if offsets:
                rec["offsets"] = offsets(t)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(name, len(tx))


def expect_hf(name, tok, tx):
    write_expect(name, tx, lambda t: tok.encode(t).ids, lambda a, b: tok.encode(a, b).ids,
                 lambda ids, skip: tok.decode(ids, skip_special_tokens=skip),
                 lambda t: [list(o) for o in tok.encode(t).offsets])


def train_unigram(lines):
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always", split=True)
    tr = trainers.UnigramTrainer(vocab_size=800, special_tokens=["<pad>", "</s>", "<unk>"],
                                 unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(lines, tr)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    tok.decoder = decoders.Metaspace(prepend_scheme="always", split=True)
    return tok


def unigram_bf(uni):
    j = json.loads(uni.to_str())
    vocab = j["model"]["vocab"]
    low = min(s for _, s in vocab) - 1.0
    vocab += [["<0x%02X>" % b, low] for b in range(256)]
    j["model"]["byte_fallback"] = True
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Strip", "strip_left": True, "strip_right": True}]}
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "first", "split": False}
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    return Tokenizer.from_str(json.dumps(j))


def variants(uni):
    """the remaining components on the unigram vocabulary: legacy Llama's Prepend + Replace
    normalizers with NFKD / Lowercase / NFC and no pre-tokenizer; NFD with Metaspace
    prepend_scheme never"""
    j = json.loads(uni.to_str())
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFKD"}, {"type": "Lowercase"}, {"type": "NFC"},
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    j["pre_tokenizer"] = None
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 2, "stop": 0}]}
    # (Strip with stop > 0 panics in tokenizers on an empty or all-stripped text)
    a = Tokenizer.from_str(json.dumps(j))
    j = json.loads(uni.to_str())
    j["normalizer"] = {"type": "NFD"}
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never",
                          "split": True}
    j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never",
                    "split": True}
    return a, Tokenizer.from_str(json.dumps(j))


class _Orig:
    """what transformers' SpmConverter reads of a slow tokenizer"""

    def __init__(self, path):
        self.vocab_file = path
        self.add_prefix_space = True


def fuzz_seeds(tmp, common):
    """small seeds for fuzz/fuzz_spm.c (its first byte picks the mode): tiny models whose
    charsmap is compiled from a handful of rules, so that they fit libFuzzer's max_len"""
    out = os.path.join(ROOT, "fuzz", "spm_seeds")
    os.makedirs(out, exist_ok=True)
    rules = os.path.join(tmp, "rules.tsv")
    with open(rules, "w") as f:  # full-width A..J -> ASCII, a ligature, NBSP -> space, a mark
        for i in range(10):
            f.write("%X\t%X\n" % (0xFF21 + i, 0x41 + i))
        f.write("FB01\t66 69\nA0\t20\n65 301\tE9\n")
    from sentencepiece import sentencepiece_model_pb2 as pb
    for kind in ("unigram", "bpe"):
        prefix = os.path.join(tmp, "seed_" + kind)
        spm.SentencePieceTrainer.train(model_prefix=prefix, vocab_size=400, model_type=kind,
                                       byte_fallback=kind == "bpe",
                                       normalization_rule_tsv=rules, **common)
        with open(prefix + ".model", "rb") as f:
            model = f.read()
        with open(os.path.join(out, "model_" + kind), "wb") as f:
            f.write(b"\x00" + model)
        m = pb.ModelProto()
        m.ParseFromString(model)
        cm = m.normalizer_spec.precompiled_charsmap
        for mode, name in ((1, "charsmap_spm_"), (2, "charsmap_hf_")):
            with open(os.path.join(out, name + kind), "wb") as f:
                f.write(bytes([mode]) + cm)
    print("fuzz seeds:", sorted(os.listdir(out)))


def main():
    os.makedirs(FIX, exist_ok=True)
    lines = corpus_lines()
    tx = texts(lines)
    with open(os.path.join(FIX, "texts.txt"), "w", encoding="utf-8") as f:
        for t in tx:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    tmp = tempfile.mkdtemp()
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    uni = train_unigram(lines)
    bf = unigram_bf(uni)
    legacy, never = variants(uni)
    for name, tok in (("unigram", uni), ("unigram_bf", bf), ("legacy", legacy), ("never", never)):
        os.makedirs(os.path.join(FIX, name), exist_ok=True)
        tok.save(os.path.join(FIX, name, "tokenizer.json"))
        expect_hf(name, Tokenizer.from_file(os.path.join(FIX, name, "tokenizer.json")), tx)

    common = dict(input=corpus, num_threads=1, minloglevel=2, seed_sentencepiece_size=100000,
                  character_coverage=0.9995)
    uni_prefix = os.path.join(tmp, "uni")
    spm.SentencePieceTrainer.train(model_prefix=uni_prefix, vocab_size=1000, model_type="unigram",
                                   normalization_rule_name="nmt_nfkc", **common)
    bpe_prefix = os.path.join(tmp, "bpe")
    spm.SentencePieceTrainer.train(model_prefix=bpe_prefix, vocab_size=600, model_type="bpe",
                                   byte_fallback=True, normalization_rule_name="nmt_nfkc",
                                   **common)
    fuzz_seeds(tmp, common)
    shutil.copy(uni_prefix + ".model", os.path.join(FIX, "spm_uni.model"))
    shutil.copy(bpe_prefix + ".model", os.path.join(FIX, "spm_bpe.model"))
    for name in ("uni", "bpe"):
        sp = spm.SentencePieceProcessor(model_file=os.path.join(FIX, "spm_%s.model" % name))
        write_expect("spm_" + name, tx, lambda t: sp.encode(t),
                     lambda a, b: sp.encode(a) + sp.encode(b),
                     lambda ids, skip: sp.decode(ids))

    from transformers import LlamaTokenizer, MarianTokenizer, T5Tokenizer
    from transformers.convert_slow_tokenizer import SpmConverter

    d = os.path.join(tmp, "t5")
    os.makedirs(d)
    shutil.copy(uni_prefix + ".model", os.path.join(d, "spiece.model"))
    t5 = T5Tokenizer.from_pretrained(d, extra_ids=0)
    os.makedirs(os.path.join(FIX, "t5"), exist_ok=True)
    t5.backend_tokenizer.save(os.path.join(FIX, "t5", "tokenizer.json"))
    expect_hf("t5", Tokenizer.from_file(os.path.join(FIX, "t5", "tokenizer.json")), tx)

    conv = SpmConverter(_Orig(uni_prefix + ".model")).converted()
    os.makedirs(os.path.join(FIX, "spmconv"), exist_ok=True)
    conv.save(os.path.join(FIX, "spmconv", "tokenizer.json"))
    expect_hf("spmconv", Tokenizer.from_file(os.path.join(FIX, "spmconv", "tokenizer.json")), tx)

    d = os.path.join(tmp, "llama")
    os.makedirs(d)
    shutil.copy(bpe_prefix + ".model", os.path.join(d, "tokenizer.model"))
    ll = LlamaTokenizer.from_pretrained(d, legacy=False)
    os.makedirs(os.path.join(FIX, "llama"), exist_ok=True)
    ll.backend_tokenizer.save(os.path.join(FIX, "llama", "tokenizer.json"))
    expect_hf("llama", Tokenizer.from_file(os.path.join(FIX, "llama", "tokenizer.json")), tx)
    j = json.loads(ll.backend_tokenizer.to_str())  # no byte fallback, no unk: chars dropped
    j["model"]["byte_fallback"] = False
    os.makedirs(os.path.join(FIX, "llama_nobf"), exist_ok=True)
    with open(os.path.join(FIX, "llama_nobf", "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    expect_hf("llama_nobf", Tokenizer.from_file(os.path.join(FIX, "llama_nobf", "tokenizer.json")),
              tx)

    md = os.path.join(FIX, "marian")
    os.makedirs(md, exist_ok=True)
    shutil.copy(uni_prefix + ".model", os.path.join(md, "source.spm"))
    shutil.copy(uni_prefix + ".model", os.path.join(md, "target.spm"))
    sp = spm.SentencePieceProcessor(model_file=uni_prefix + ".model")
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        if p not in vocab and p not in ("<s>",) and not sp.is_unknown(i):
            vocab[p] = len(vocab)
    vocab[">>de<<"] = len(vocab)
    vocab[">>fr<<"] = len(vocab)
    vocab["<pad>"] = len(vocab)
    with open(os.path.join(md, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=1)
    mt = MarianTokenizer(os.path.join(md, "source.spm"), os.path.join(md, "target.spm"),
                         os.path.join(md, "vocab.json"))
    write_expect("marian", tx, lambda t: mt(t).input_ids, lambda a, b: mt(a, b).input_ids,
                 lambda ids, skip: mt.decode(ids, skip_special_tokens=skip))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
