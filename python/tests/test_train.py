"""qkv.prepare_data / qkv.train / qkv.finetune against the command line: the same tiny runs
(a GPT-2 on a dataset of the repository's docs, as tests/cli/test_train_cli.sh; a fine-tune of
the tiny classifier tests/fixtures/cls/single on a keyword-labelled set, as
tests/cli/test_finetune_cli.sh; a LoRA fine-tune of all-MiniLM-L6-v2 when it is installed) run
once by `qkv` and once from Python in the same directory give byte-identical shards,
config.json, checkpoints, best.safetensors, exported weights and reports, and the same
metrics.jsonl lines but for the timings. The progress callback sees every step and
evaluation; Ctrl-C and exceptions in it stop the run at a step boundary with a checkpoint, and
the CLI's --resume finishes it with the uninterrupted run's bits; bad paths and options raise
qkv.Error with qkv's message."""

import json
import os
import random
import re
import shutil
import signal
import subprocess

import pytest

import qkv
from conftest import FIX, ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))[:6] + [ROOT / "README.md"]
TIMINGS = ("tokens_per_s", "step_s", "elapsed_s")


def cli(qkv_cli, *args, ok=True):
    r = subprocess.run([str(qkv_cli), *map(str, args)], capture_output=True, timeout=300)
    if ok:
        assert r.returncode == 0, f"qkv {args[0]}: exit {r.returncode}: " \
                                  f"{r.stderr.decode(errors='replace')}"
    return r


def same_file(a, b):
    return a.read_bytes() == b.read_bytes()


def lines_without_timings(path):
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        for k in TIMINGS:
            d.pop(k, None)
        out.append(d)
    return out


def no_plots(files):
    """A resumed run's plots redraw the steps of before the resume from metrics.jsonl's rounded
    numbers (a pixel's hundredth apart from the uninterrupted run's): not compared."""
    return [f for f in files if not f.endswith(".svg")]


def compare_runs(a, b, files):
    """Two run directories: the listed files byte-identical, metrics equal but the timings."""
    for f in files:
        assert (a / f).is_file(), f"{a / f} missing"
        assert same_file(a / f, b / f), f"{f} differs"
    assert lines_without_timings(a / "metrics.jsonl") == lines_without_timings(b / "metrics.jsonl")
    ckpts = sorted(p.name for p in a.glob("ckpt_*.safetensors"))
    assert ckpts and ckpts == sorted(p.name for p in b.glob("ckpt_*.safetensors"))
    for c in ckpts:
        assert same_file(a / c, b / c), f"{c} differs"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, qkv_cli):
    """A byte-level BPE of 512 ids trained by qkv on some of the repository's docs, and the
    dataset `qkv data prepare` makes of them."""
    d = tmp_path_factory.mktemp("corpus")
    cli(qkv_cli, "tokenizer", "train", "--vocab-size", 512, "--special", "<|endoftext|>",
        "--out", d / "tok", *DOCS)
    cli(qkv_cli, "data", "prepare", "--tokenizer", d / "tok", "--val-fraction", 0.25,
        "--split-on", "", "--out", d / "data", *DOCS)
    return d


def test_prepare_data_equals_cli(corpus, tmp_path):
    st = qkv.prepare_data(DOCS, tmp_path / "data", corpus / "tok", val_fraction=0.25,
                          split_on="")
    want = sorted(p.name for p in (corpus / "data").iterdir())
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == want
    for name in want:
        if name.endswith(".bin"):
            assert same_file(corpus / "data" / name, tmp_path / "data" / name), name
    meta = json.loads((corpus / "data" / "meta.json").read_text())
    assert meta == json.loads((tmp_path / "data" / "meta.json").read_text())
    assert st["documents"][0] > 0 and st["documents"][1] > 0 and st["tokens"][0] > 0
    with pytest.raises(qkv.IOFailure) as e:
        qkv.prepare_data([tmp_path / "missing.txt"], tmp_path / "d2", corpus / "tok")
    assert "missing.txt" in e.value.message


FLAGS = dict(n_layer=2, n_embd=32, n_head=2, seq=32, batch=4, steps=8, warmup=2, lr=3e-3,
             eval_every=4, eval_batches=2, save_every=4, keep=2, threads=1)


def cli_flags(d):
    out = []
    for k, v in d.items():
        out += ["--" + k.replace("_", "-"), v]
    return out


TRAIN_FILES = ["config.json", "model/config.json", "model/model.safetensors",
               "model/tokenizer.json", "loss.svg"]


def test_train_equals_cli(qkv_cli, corpus, tmp_path):
    run = tmp_path / "run"
    cli(qkv_cli, "train", "--data", corpus / "data", "--out", run, *cli_flags(FLAGS))
    run.rename(tmp_path / "cli")
    seen = []
    r = qkv.train(data=corpus / "data", out=run, progress=seen.append, **FLAGS)
    run.rename(tmp_path / "py")
    compare_runs(tmp_path / "cli", tmp_path / "py", TRAIN_FILES)
    assert r.steps == 8 and r.model == str(run / "model")
    # the callback: every step once, the evaluations after steps 4 and 8, in order
    assert [d["step"] for d in seen if d["kind"] == "step"] == list(range(1, 9))
    assert [d["step"] for d in seen if d["kind"] == "eval"] == [4, 8]
    assert seen == r.metrics
    lines = [json.loads(x) for x in (tmp_path / "py" / "metrics.jsonl").read_text().splitlines()]
    for d, line in zip(seen, lines):  # the dicts carry the file's numbers at full precision
        assert d["step"] == line["step"]
        key = "loss" if d["kind"] == "step" else "val_loss"
        assert f"{d[key]:.6f}" == f"{line[key]:.6f}"
    # the exported model generates as the CLI's
    with qkv.LM(tmp_path / "py" / "model") as lm:
        assert lm.vocab_size == 512


# metrics.jsonl's formats of each number (src/train/loop.c)
FILE_FORMATS = {"loss": "%.6f", "lr": "%.6g", "grad_norm": "%.6g", "tokens_per_s": "%.1f",
                "step_s": "%.4f", "elapsed_s": "%.2f", "val_loss": "%.6f", "val_ppl": "%.4f",
                "epoch": "%.4f", "val_accuracy": "%.6f", "val_macro_f1": "%.6f"}


def test_progress_full_precision(corpus, tmp_path):
    """The callback's numbers are the run's doubles: printed as metrics.jsonl prints them they
    give the file's text exactly, and they carry more digits than the file."""
    seen = []
    r = qkv.train(corpus / "data", tmp_path / "run", progress=seen.append,
                  **dict(FLAGS, steps=5, eval_every=2))
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(seen) == len(lines) == 5 + 3 and seen == r.metrics
    compared = finer = 0
    for d, line in zip(seen, lines):
        raw = dict(re.findall(r'"(\w+)": (-?[0-9][0-9.e+-]*)', line))
        assert {k for k in d if k not in ("kind", "replayed")} == set(json.loads(line))
        for k, text in raw.items():
            if k in FILE_FORMATS:
                assert isinstance(d[k], float)
                assert FILE_FORMATS[k] % d[k] == text, (k, d[k], text)
                compared += 1
                finer += d[k] != float(text)
    assert compared >= 5 * 6 + 3 * 2 and finer >= compared // 2


def test_executable_override(corpus, tmp_path, monkeypatch):
    """QKV_EXE names the command that runs; a missing one is qkv.NotFound."""
    monkeypatch.setenv("QKV_EXE", str(tmp_path / "no-qkv"))
    with pytest.raises(qkv.NotFound) as e:
        qkv.train(corpus / "data", tmp_path / "run", **FLAGS)
    assert "no-qkv" in e.value.message and not (tmp_path / "run").exists()


def test_train_llama_init_equals_cli(qkv_cli, corpus, tmp_path):
    """--arch llama from scratch (RUN/model_config.json), then --init from its export."""
    f = dict(FLAGS, steps=3, eval_every=0, save_every=0)
    run = tmp_path / "run"
    cli(qkv_cli, "train", "--data", corpus / "data", "--out", run, "--arch", "llama",
        *cli_flags(f))
    run.rename(tmp_path / "cli")
    qkv.train(corpus / "data", run, arch="llama", **f)
    run.rename(tmp_path / "py")
    compare_runs(tmp_path / "cli", tmp_path / "py", TRAIN_FILES + ["model_config.json"])
    g = dict(f, steps=2)
    cli(qkv_cli, "train", "--data", corpus / "data", "--out", run, "--init",
        tmp_path / "cli" / "model", *cli_flags(g))
    run.rename(tmp_path / "cli_init")
    qkv.train(corpus / "data", run, init=tmp_path / "cli" / "model", **g)
    compare_runs(tmp_path / "cli_init", run, TRAIN_FILES)


@pytest.mark.parametrize("how", ["raise", "sigint"])
def test_train_interrupt_then_resume(qkv_cli, corpus, tmp_path, how):
    """Ctrl-C (a real SIGINT) or an exception in the callback stops after that step with a
    checkpoint and is raised; the CLI's --resume and qkv.train(resume=True) then finish with
    the bits of the uninterrupted run."""
    run = tmp_path / "run"  # (the runs share their path: it is in config.json and checkpoints)
    full = qkv.train(corpus / "data", run, **FLAGS)
    run.rename(tmp_path / "full")

    def stop_at_3(d):
        if d["kind"] == "step" and d["step"] == 3:
            if how == "sigint":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        qkv.train(corpus / "data", run, progress=stop_at_3, **FLAGS)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert sorted(p.name for p in run.glob("ckpt_*")) == ["ckpt_00000003.safetensors"]
    assert not (run / "model").exists()
    shutil.copytree(run, tmp_path / "stopped")
    cli(qkv_cli, "train", "--resume", "--out", run)
    compare_runs(tmp_path / "full", run, no_plots(TRAIN_FILES))
    shutil.rmtree(run)
    (tmp_path / "stopped").rename(run)
    seen = []
    r = qkv.train(out=run, resume=True, progress=seen.append)
    assert [d["step"] for d in seen if d["kind"] == "step"] == [4, 5, 6, 7, 8]
    assert [d["step"] for d in r.metrics if d.get("replayed")] == [1, 2, 3]
    assert [d["step"] for d in r.metrics if not d.get("replayed")] == \
        [d["step"] for d in seen]
    compare_runs(tmp_path / "full", run, no_plots(TRAIN_FILES))
    # the losses of the resumed steps equal the uninterrupted run's at full precision
    assert [(d["step"], d["loss"]) for d in seen if d["kind"] == "step"] == \
        [(d["step"], d["loss"]) for d in full.metrics if d["kind"] == "step"][3:]


def test_callback_error_stops_and_raises(corpus, tmp_path):
    class Boom(Exception):
        pass

    def boom(d):
        raise Boom("from the callback")

    with pytest.raises(Boom):
        qkv.train(corpus / "data", tmp_path / "run", progress=boom, **FLAGS)
    assert [p.name for p in (tmp_path / "run").glob("ckpt_*")] == ["ckpt_00000001.safetensors"]


def test_train_errors(qkv_cli, corpus, tmp_path):
    missing = tmp_path / "no-data"
    with pytest.raises(qkv.Error) as e:
        qkv.train(missing, tmp_path / "a", **FLAGS)
    r = cli(qkv_cli, "train", "--data", missing, "--out", tmp_path / "b", ok=False)
    assert r.returncode == 2 and e.value.message.startswith(f"{missing}: ")
    # the CLI says it as "qkv: DIR: input/output error: DETAIL"
    assert e.value.message[len(str(missing)) + 2:] in r.stderr.decode()
    with pytest.raises(qkv.InvalidArgument) as e:  # the CLI's range: [0, 10]
        qkv.train(corpus / "data", tmp_path / "c", **dict(FLAGS, lr=11))
    assert "lr must be a number in [0, 10]" in str(e.value)
    with pytest.raises(TypeError):
        qkv.train(corpus / "data", tmp_path / "c", n_layers=2)
    with pytest.raises(qkv.InvalidArgument) as e:
        qkv.train(corpus / "data", tmp_path / "c", **dict(FLAGS, n_positions=16))
    assert "seq 32 is longer than the model's n_positions 16" in str(e.value)
    with pytest.raises(qkv.InvalidArgument) as e:  # a run is there: resume, not overwrite
        qkv.train(corpus / "data", tmp_path / "d", **dict(FLAGS, steps=1, eval_every=0))
        qkv.train(corpus / "data", tmp_path / "d", **dict(FLAGS, steps=1, eval_every=0))
    assert "already holds a run" in str(e.value)
    with pytest.raises(qkv.InvalidArgument) as e:  # only the resumable options may change
        qkv.train(out=tmp_path / "d", resume=True, lr=1e-2)
    assert "cannot change on --resume" in str(e.value)


# ---------------------------------------------------------------- fine-tuning

CLS = FIX / "cls" / "single"


def labelled(n, seed):
    """Keyword-labelled TSV as tests/cli/cls_data.sh writes it (Python's generator)."""
    g = random.Random(seed)
    words = {"positive": "good great love win".split(), "negative": "bad awful hate".split(),
             "neutral": "vote law cell atom paint".split()}
    filler = "the movie film it this was is very team game music and of to in play".split()
    rows = ["text\tlabel"]
    for _ in range(n):
        label = g.choice(sorted(words))
        s = " ".join(g.choice(filler) for _ in range(2 + g.randrange(4)))
        rows.append(f"{s} {g.choice(words[label])}\t{label}")
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def cls_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cls")
    (d / "train.tsv").write_text(labelled(80, 1))
    (d / "test.tsv").write_text(labelled(30, 2))
    return d


FT_FILES = ["config.json", "best.safetensors", "report.txt", "model/config.json",
            "model/model.safetensors", "model/tokenizer.json", "loss.svg", "f1.svg",
            "confusion.svg"]


def finetune_both(qkv_cli, tmp_path, cli_args, **kw):
    """The same fine-tune by the CLI and from Python in the same directory: (cli, py, result,
    callback records)."""
    run = tmp_path / "run"
    cli(qkv_cli, "finetune", "--out", run, *cli_args)
    run.rename(tmp_path / "cli")
    seen = []
    r = qkv.finetune(out=run, progress=seen.append, **kw)
    run.rename(tmp_path / "py")
    return tmp_path / "cli", tmp_path / "py", r, seen


def test_finetune_equals_cli(qkv_cli, cls_data, tmp_path):
    a, b, r, seen = finetune_both(
        qkv_cli, tmp_path,
        ["--model", CLS, "--train", cls_data / "train.tsv", "--test", cls_data / "test.tsv",
         "--epochs", 2, "--batch", 8, "--lr", 5e-3, "--threads", 1],
        model=CLS, train=cls_data / "train.tsv", test=cls_data / "test.tsv", epochs=2, batch=8,
        lr=5e-3, threads=1)
    compare_runs(a, b, FT_FILES + ["test_report.txt"])
    steps_per_epoch = 9  # 72 training examples (10% of 80 held out) in batches of 8
    assert [d["step"] for d in seen if d["kind"] == "step"] == list(range(1, 19))
    evals = [d for d in seen if d["kind"] == "eval"]
    assert [d["step"] for d in evals] == [steps_per_epoch, 2 * steps_per_epoch]
    assert all(0 <= d["val_accuracy"] <= 1 and "val_macro_f1" in d for d in evals)
    assert r.report == (b / "report.txt").read_text() and "macro avg" in r.report
    assert r.test_report == (b / "test_report.txt").read_text()
    with qkv.Model(b / "model") as m:
        assert m.labels == ["negative", "neutral", "positive"]


def test_finetune_lora_equals_cli(qkv_cli, cls_data, tmp_path):
    a, b, r, seen = finetune_both(
        qkv_cli, tmp_path,
        ["--model", CLS, "--train", cls_data / "train.tsv", "--epochs", 1, "--batch", 8,
         "--lr", 5e-3, "--lora-r", 4, "--threads", 1, "--dropout", "off"],
        model=CLS, train=cls_data / "train.tsv", epochs=1, batch=8, lr=5e-3, lora_r=4,
        dropout="off", threads=1)
    compare_runs(a, b, FT_FILES + ["adapter/adapter_model.safetensors",
                                   "adapter/adapter_config.json"])
    assert r.adapter == str(tmp_path / "run" / "adapter")


def test_finetune_minilm_lora_equals_cli(qkv_cli, minilm, cls_data, tmp_path):
    """The real model (skipped when absent): a LoRA fine-tune of a few examples."""
    small = tmp_path / "small.tsv"
    small.write_text("".join((cls_data / "train.tsv").read_text().splitlines(True)[:21]))
    a, b, r, seen = finetune_both(
        qkv_cli, tmp_path,
        ["--model", minilm, "--train", small, "--epochs", 1, "--batch", 8, "--max-length", 16,
         "--lora-r", 2, "--threads", 2],
        model=minilm, train=small, epochs=1, batch=8, max_length=16, lora_r=2, threads=2)
    compare_runs(a, b, ["config.json", "best.safetensors", "report.txt",
                        "model/model.safetensors", "adapter/adapter_model.safetensors"])


def test_finetune_interrupt_then_cli_resume(qkv_cli, cls_data, tmp_path):
    kw = dict(model=CLS, train=cls_data / "train.tsv", epochs=2, batch=8, lr=5e-3, threads=1)
    run = tmp_path / "run"
    qkv.finetune(out=run, **kw)
    run.rename(tmp_path / "full")

    def stop_at_5(d):
        if d["kind"] == "step" and d["step"] == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        qkv.finetune(out=run, progress=stop_at_5, **kw)
    assert (run / "ckpt_00000005.safetensors").is_file() and not (run / "model").exists()
    cli(qkv_cli, "finetune", "--resume", "--out", run, "--threads", 1)
    compare_runs(tmp_path / "full", run, no_plots(FT_FILES))


def test_finetune_errors(qkv_cli, cls_data, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\nfine\tpositive\nno label here\n")
    with pytest.raises(qkv.FormatError) as e:
        qkv.finetune(model=CLS, train=bad, out=tmp_path / "a")
    assert f"{bad}:3" in e.value.message
    r = cli(qkv_cli, "finetune", "--model", CLS, "--train", bad, "--out", tmp_path / "b",
            ok=False)
    # the CLI's line "qkv: WHAT: STATUS: DETAIL" is the exception's status and message
    what, _, detail = e.value.message.partition(": ")
    assert r.returncode == 2
    assert f"qkv: {what}: {e.value.status_name}: {detail}\n" in r.stderr.decode()
    missing = tmp_path / "no-model"
    with pytest.raises(qkv.Error) as e:
        qkv.finetune(model=missing, train=cls_data / "train.tsv", out=tmp_path / "c")
    assert str(missing) in e.value.message
    with pytest.raises(qkv.InvalidArgument) as e:
        qkv.finetune(model=CLS, train=cls_data / "train.tsv", out=tmp_path / "c", epochs=0)
    assert "--epochs wants a number in 1..100000" in str(e.value)
    with pytest.raises(qkv.InvalidArgument):
        qkv.finetune(model=CLS, train=cls_data / "train.tsv", out=tmp_path / "c",
                     problem="ordinal")
    with pytest.raises(TypeError):
        qkv.finetune(model=CLS, train=cls_data / "train.tsv", out=tmp_path / "c", epoch=2)


# ---------------------------------------------------------------- translation (arch marian)

MARIAN = FIX / "marian" / "tiny"


def toy_pairs(n, seed):
    """Sentences of 1-3 words, each word with a fixed partner (as tests/cli/test_train_mt.sh)."""
    g = random.Random(seed)
    a, b = "the a of to and in you or".split(), "of to and in you or the a".split()
    src, tgt = [], []
    for _ in range(n):
        w = [g.randrange(8) for _ in range(1 + g.randrange(3))]
        src.append(" ".join(a[i] for i in w))
        tgt.append(" ".join(b[i] for i in w))
    return "\n".join(src) + "\n", "\n".join(tgt) + "\n"


def test_marian_equals_cli(qkv_cli, tmp_path):
    """qkv.prepare_parallel and qkv.train(arch="marian") as the CLI: the same shards, run and
    export (weights, generation config, tokenizer files), and the export translates."""
    s, t = toy_pairs(300, 42)
    (tmp_path / "train.src").write_text(s)
    (tmp_path / "train.tgt").write_text(t)
    prep = ["--source", tmp_path / "train.src", "--target", tmp_path / "train.tgt",
            "--tokenizer", MARIAN, "--val-fraction", 0.1]
    cli(qkv_cli, "data", "prepare", *prep, "--out", tmp_path / "data_cli")
    st = qkv.prepare_parallel(tmp_path / "train.src", tmp_path / "train.tgt", tmp_path / "data",
                              MARIAN, val_fraction=0.1)
    names = sorted(p.name for p in (tmp_path / "data_cli").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "data").iterdir())
    for n in names:
        if n.endswith(".bin"):
            assert same_file(tmp_path / "data_cli" / n, tmp_path / "data" / n), n
    assert sum(st["pairs"]) == 300 and st["skipped"] == 0 and st["tokens"][0] > 0
    f = dict(arch="marian", n_layer=1, n_embd=32, n_head=2, batch=8, seq=16, steps=6,
             warmup=2, lr=2e-3, eval_every=3, eval_batches=2, save_every=3, dropout=0.0,
             threads=1)
    run = tmp_path / "run"
    cli(qkv_cli, "train", "--data", tmp_path / "data", "--out", run, *cli_flags(f))
    run.rename(tmp_path / "cli")
    seen = []
    r = qkv.train(tmp_path / "data", run, progress=seen.append, **f)
    compare_runs(tmp_path / "cli", run, [
        "config.json", "loss.svg", "model/config.json", "model/model.safetensors",
        "model/generation_config.json", "model/source.spm", "model/target.spm",
        "model/vocab.json"])
    assert r.steps == 6 and [d["step"] for d in seen if d["kind"] == "eval"] == [3, 6]
    assert "label smoothing 0.1" in r.log
    with qkv.Translator(r.model) as tr:
        out = tr.translate(["the a", "of to and"])
    assert len(out) == 2 and all(isinstance(x, str) for x in out)
    (tmp_path / "test.src").write_text("the a\nof to and\n")
    got = cli(qkv_cli, "translate", "--model", tmp_path / "cli" / "model", tmp_path / "test.src")
    assert got.stdout.decode().splitlines() == out
