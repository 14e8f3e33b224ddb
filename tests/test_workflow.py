"""The book's workflow: ``actedit.plan`` (which models each chapter loads), ``workflow/book.py`` (its steps) and
``workflow/Snakefile`` (dry runs of the default and the paper-scale DAG, the latter with the Slurm profile).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actedit import plan
from actedit.cache import Cache
from actedit.experiments import VictimSpec, get_victim

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


book = _load("book", ROOT / "workflow" / "book.py")
build_book = _load("build_book", ROOT / "scripts" / "build_book.py")
CHAPTERS = book.chapters_from_toc(ROOT)


def _parameters(stem: str, params_dir: str | None = None) -> dict:
    chapter = next(c for c in CHAPTERS if c.stem == stem)
    return book.chapter_parameters(chapter, book.load_params(params_dir, stem))


def _all_jobs(params_dir: str | None) -> dict[str, plan.ModelJob]:
    jobs = {}
    for chapter in CHAPTERS:
        parameters = _parameters(chapter.stem, params_dir)
        for job in plan.models_for(chapter.stem, parameters).jobs(device=parameters.get("device", "cpu")):
            jobs.setdefault(job.key, job)
    return jobs


# ------------------------------------------------------------------------------------------ the plan


@pytest.mark.parametrize("stem", sorted(plan.CHAPTERS))
def test_each_planned_chapter_asks_the_plan_for_its_specs(stem):
    """The chapter calls the very function the workflow reads: one list of models, not two."""
    source = (ROOT / "notebooks" / f"{stem}.md").read_text(encoding="utf-8")
    called = set(re.findall(r"\bplan\.(\w+)\(", source))
    assert called == {plan.CHAPTERS[stem].__name__}, f"{stem} calls plan.{called}"
    assert "VictimSpec(" not in source, f"{stem} builds a VictimSpec itself instead of asking actedit.plan"


def test_the_default_book_plans_each_model_once():
    table10 = plan.models_for("13_table10_target_class", _parameters("13_table10_target_class"))
    assert len(table10.victims) == 10 and len(table10.references) == 1
    # chapter 14 loads chapter 13's victims (same specs): the same cache entries, so the same jobs
    detection = plan.models_for("14_detection", _parameters("14_detection"))
    assert {j.key for j in detection.jobs() if j.role == "victim"} == {
        j.key for j in table10.jobs() if j.role == "victim"}
    # triggers with the same poisoning rate share their R: fewer jobs than specs
    triggers = plan.models_for("07_tables3_4_triggers", _parameters("07_tables3_4_triggers"))
    roles = [j.role for j in triggers.jobs()]
    assert roles.count("victim") == 8 and 1 <= roles.count("retrained") < 8
    # chapters 5 and 6: MNIST's two rows and the four width-scaled architectures, a victim and an R each; their
    # small-CNN rows are the base victim of chapter 2 (same spec, same job)
    table1 = plan.models_for("05_table1_datasets", _parameters("05_table1_datasets"))
    table2 = plan.models_for("06_table2_models", _parameters("06_table2_models"))
    base = {j.key for j in plan.models_for("02_base_configuration", _parameters("02_base_configuration")).jobs()}
    assert base <= {j.key for j in table1.jobs()} and base <= {j.key for j in table2.jobs()}
    assert len({j.key for j in table1.jobs()} - base) == 4 and len({j.key for j in table2.jobs()} - base) == 8
    # the base victim and its R are chapter 7's white-square ones and chapter 13's target-2 ones (one recipe)
    triggers_white = {plan.ModelJob(r, triggers.victims["white", 0]).key for r in ("victim", "retrained")}
    assert base == triggers_white and base <= {j.key for j in table10.jobs()}
    assert len(_all_jobs(None)) == 39


def test_a_chapter_without_the_plans_parameters_is_refused():
    with pytest.raises(ValueError, match="lack seeds"):
        plan.models_for("08_table5_samples", {"dataset": "mnist", "model": "cnn", "trigger": "white", "target": 2})
    with pytest.raises(ValueError, match="lack target"):
        plan.models_for("03_method", {"dataset": "mnist", "model": "cnn", "trigger": "white", "seed": 0})
    assert plan.models_for("01_introduction", {}).jobs() == []


def test_the_plan_reads_only_the_spec_fields_the_chapter_means():
    """Chapter 15's ``alpha`` is Eq. 7's, not the trigger's opacity: its victim is the base one."""
    parameters = _parameters("15_explorer")
    assert parameters["alpha"] == 0.0
    assert plan.models_for("15_explorer", parameters).victims[0] == VictimSpec(train_limit=8000, epochs=6)
    # chapter 14's per-target R of a dirty-label trigger is one model, shared with its clean seed 0
    detection = plan.models_for("14_detection", _parameters("14_detection"))
    assert len({plan.ModelJob("retrained", s).key for s in detection.references.values()}) == 5


def test_chapters_5_and_6_models_come_from_the_plan_with_their_recipes():
    """Tables 1 and 2 are in the plan: each row's recipe and D_U pool reach the spec the workflow trains."""
    table1 = plan.models_for("05_table1_datasets", {
        "runs": {"mnist": ["resnet18", "cnn"]}, "recipes": {"mnist": {"resnet18": {"width": 0.25, "epochs": 2}}},
        "unseen_pool": {"mnist": 300}, "trigger": "white", "target": 1, "seeds": [0, 1]})
    assert set(table1.victims) == {("mnist", 0), ("mnist", 1), ("mnist/cnn", 0), ("mnist/cnn", 1)}
    assert table1.victims["mnist", 1] == VictimSpec(dataset="mnist", model="resnet18", target=1, seed=1, width=0.25,
                                                    epochs=2, unseen=300)
    assert table1.victims["mnist/cnn", 0] == VictimSpec(dataset="mnist", target=1, unseen=300)
    table2 = plan.models_for("06_table2_models", {
        "dataset": "fashion-mnist", "models": ["vgg16", "cnn"], "recipes": {"vgg16": {"train_limit": 100}},
        "trigger": "white", "target": 2, "seeds": [0]})
    assert table2.victims["vgg16", 0] == VictimSpec(model="vgg16", train_limit=100)
    assert table2.victims["cnn", 0] == table2.references["cnn", 0] == VictimSpec()
    with pytest.raises(ValueError, match="chapter 06_table2_models: .*lack"):
        plan.models_for("06_table2_models", {"dataset": "fashion-mnist"})


@pytest.mark.slow
def test_a_job_trains_the_entry_the_chapter_loads(tmp_path):
    """A training job's output is the cache entry get_victim reads; once it is there nothing trains again."""
    cache = Cache(tmp_path)
    job = plan.ModelJob("victim", VictimSpec(train_limit=600, test_limit=100, unseen=100, epochs=1))
    path = job.train(cache=cache)
    assert path == job.path(cache) and path.is_file()
    before = path.stat().st_mtime_ns
    victim = get_victim(job.spec, cache=cache, progress=False)
    assert path.stat().st_mtime_ns == before
    assert victim.meta["loss"], "the chapter got the trained model's record"
    assert plan.ModelJob("victim", VictimSpec(**json.loads(job.to_json()))).key == job.key
    with pytest.raises(ValueError, match="role"):
        plan.ModelJob("baseline", job.spec)
    # the cache keeps GPU-trained weights apart: another device is another job
    assert plan.ModelJob("victim", job.spec, "cuda").key != job.key


# ------------------------------------------------------------------------------------------- the steps


def test_parameters_are_the_cell_then_the_file(tmp_path):
    assert _parameters("07_tables3_4_triggers")["epochs"] == 6
    paper = _parameters("07_tables3_4_triggers", str(ROOT / "params" / "paper"))
    assert paper["dataset"] == "cifar10" and paper["n_images"] == 512
    (tmp_path / "03_method.yml").write_text("no_such_parameter: 1\n")
    with pytest.raises(ValueError, match="no_such_parameter"):
        _parameters("03_method", str(tmp_path))
    (tmp_path / "bad.yml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        book.load_params(tmp_path, "bad")


TINY = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Tiny

```{code-cell} ipython3
:tags: [parameters]

x = 1
```

```{code-cell} ipython3
import os
print(f"x = {x}, threads {os.environ['OMP_NUM_THREADS']}")
```
"""


@pytest.fixture
def tiny_book(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "tiny.md").write_text(TINY)
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/_executed/tiny\nchapters:\n  - file: book/references\n")
    return tmp_path


def test_a_chapter_executes_with_its_parameters_on_one_thread(tiny_book, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    (chapter,) = book.chapters_from_toc(tiny_book)
    assert chapter.executed == tiny_book / "book" / "_executed" / "tiny.ipynb"
    book.execute(chapter, {"x": 2}, root=tiny_book, log=lambda _: None)
    cells = json.loads(chapter.executed.read_text())["cells"]
    printed = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))
    assert "x = 2, threads 1" in printed


def test_a_failing_chapter_names_itself_and_keeps_its_partial_output(tiny_book):
    (chapter,) = book.chapters_from_toc(tiny_book)
    chapter.source.write_text(TINY.replace("import os", 'raise RuntimeError("broken on purpose")'))
    with pytest.raises(book.BuildError, match="notebook tiny .*failed") as error:
        book.execute(chapter, {}, root=tiny_book, log=lambda _: None)
    assert "broken on purpose" in str(error.value)
    assert not chapter.executed.exists()
    assert (tiny_book / "_build" / "failed" / "tiny.ipynb").is_file()


def test_a_toc_entry_without_source_is_an_error(tiny_book):
    (tiny_book / "_toc.yml").write_text("format: jb-book\nroot: book/_executed/missing\n")
    with pytest.raises(FileNotFoundError, match="notebooks/missing.md"):
        book.chapters_from_toc(tiny_book)


def test_jobs_default_and_its_bad_value(monkeypatch):
    monkeypatch.setenv("ACTEDIT_BOOK_JOBS", "3")
    assert book.default_jobs() == 3
    monkeypatch.setenv("ACTEDIT_BOOK_JOBS", "two")
    with pytest.raises(ValueError, match="ACTEDIT_BOOK_JOBS"):
        book.default_jobs()
    monkeypatch.delenv("ACTEDIT_BOOK_JOBS")
    assert 1 <= book.default_jobs() <= 4


def test_the_summary_reports_what_ran(tmp_path):
    for kind, name, seconds in [("train", "abc", 30.0), ("train", "def", 12.5), ("execute", "03_method", 40.0),
                                ("nbval", "03_method", 20.0)]:
        (tmp_path / kind).mkdir(exist_ok=True)
        (tmp_path / kind / f"{name}.tsv").write_text(f"s\th:m:s\n{seconds}\t0:00:{int(seconds)}\n")
    table = book.times_table(book.times(tmp_path))
    assert "trained 2 models in 42 s (longest 30 s)" in table
    assert re.search(r"03_method\s+execute\s+40.0\s+nbval\s+20.0", table)
    assert book.times(tmp_path, since=4e9) == []
    assert "nothing ran" in book.times_table([])


def test_the_old_entry_point_maps_onto_snakemake_targets():
    args = build_book.parse_args(["--only", "03_method", "--no-html", "--nbval", "--params", "params/paper", "-j", "2"])
    command = build_book.snakemake_command(args)
    assert command[1:3] == ["book/_executed/03_method.ipynb", "_build/nbval/03_method.passed"]
    assert command[3:5] == ["--cores", "2"] and "params=params/paper" in command and "nbval=1" in command
    assert build_book.snakemake_command(build_book.parse_args([]))[1] == "all"
    with pytest.raises(ValueError, match="not in _toc.yml: nope"):
        build_book.snakemake_command(build_book.parse_args(["--only", "nope"]))


def test_the_dag_figure_names_the_models_of_its_training_jobs():
    job = next(iter(_all_jobs(None).values()))
    dot = f'4[label = "train\\nkey: {job.key}"];\n5[label = "train\\nkey: 0123"];'
    labelled = book.label_dag(dot)
    assert job.key not in labelled and job.describe().split()[1] in labelled
    assert "key: 0123" in labelled  # not a model of this book: left as it was


# ------------------------------------------------------------------------------------------ dry runs


def _dry_run(tmp_path, *options: str) -> str:
    if not SNAKEMAKE.exists():
        pytest.skip("snakemake is not installed in this environment (requirements.lock has it: make setup)")
    env = {**os.environ, "ACTEDIT_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([str(SNAKEMAKE), "all", "-n", "--forceall", "--nolock", *options], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_the_default_dag_has_a_job_per_model_and_chapter(tmp_path):
    counts = _job_counts(_dry_run(tmp_path, "--cores", "2"))
    assert counts["train"] == len(_all_jobs(None))
    assert counts["execute"] == counts["nbval"] == len(CHAPTERS)
    assert counts["html"] == 1


def test_make_book_runs_no_nbval_and_its_html_waits_for_none(tmp_path):
    """`make book` (nbval=0) executes every chapter and builds the HTML without a single nbval job; nbval is
    `make test`'s (the Makefile's book and checked targets)."""
    counts = _job_counts(_dry_run(tmp_path, "--cores", "2", "--config", "nbval=0"))
    assert counts["execute"] == len(CHAPTERS) and counts["html"] == 1 and "nbval" not in counts
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^book: setup\n\t\$\(call SNAKEMAKE,all,nbval=0\)", makefile, re.MULTILINE)
    assert re.search(r"^checked: setup\n\t\$\(call SNAKEMAKE,all,nbval=1\)", makefile, re.MULTILINE)
    assert re.search(r"^test: unit checked browser-test$", makefile, re.MULTILINE)


def test_the_paper_scale_dry_run_with_the_slurm_profile_lists_every_job(tmp_path):
    output = _dry_run(tmp_path, "--profile", "profiles/slurm", "--config", "params=params/paper")
    counts = _job_counts(output)
    jobs = _all_jobs("params/paper")
    assert counts["train"] == len(jobs) > len(_all_jobs(None))
    assert counts["execute"] == counts["nbval"] == len(CHAPTERS)
    for job in jobs.values():  # every model: its cache entry and what it is
        assert f"train {job.key}: {job.describe()}" in output
    for chapter in CHAPTERS:
        assert f"output: book/_executed/{chapter.stem}.ipynb" in output
    chapter_resources = re.findall(r"output: book/_executed/\S+\n(?:.*\n){0,5}?\s+resources: (.*)", output)
    assert len(chapter_resources) == len(CHAPTERS)
    assert all("gpu=1" in r and "slurm_partition=gpu" in r for r in chapter_resources)


def test_nbval_rerun_writes_its_results_apart(monkeypatch, tmp_path):
    """nbval re-executes a chapter; its results file must not replace the executed run's, which the summary reads
    (a re-run rewrites the file from scratch, so a summary executing beside it would judge half a chapter)."""
    import dataclasses

    chapter = next(c for c in CHAPTERS if c.stem == "05_table1_datasets")
    chapter = dataclasses.replace(chapter, executed=tmp_path / "05_table1_datasets.ipynb")
    chapter.executed.write_text("{}")
    seen = {}

    def fake_run(command, *, env, **kwargs):
        seen["dir"] = env.get("ACTEDIT_RESULTS_DIR")
        seen["exists"] = seen["dir"] is not None and Path(seen["dir"]).is_dir()
        return subprocess.CompletedProcess(command, 0, stdout="1 passed\n")

    monkeypatch.setattr(book.subprocess, "run", fake_run)
    book.validate(chapter, root=ROOT, log=lambda *_: None)
    assert seen["exists"], "nbval's kernel got no scratch results folder"
    assert Path(seen["dir"]).resolve() != (ROOT / "book" / "_executed").resolve()
    assert not Path(seen["dir"]).exists(), "the scratch folder outlives the check"


def test_run_boxes_take_a_cold_builds_measured_seconds(tmp_path, monkeypatch):
    """`workflow/book.py run-boxes` writes execute, nbval and the training seconds of the chapter's own models
    (from actedit.plan) into its run box, and leaves a chapter that did not run as it was."""
    import shutil

    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy(ROOT / name, root / name)
    for chapter in CHAPTERS:
        shutil.copy(chapter.source, root / "notebooks" / chapter.source.name)
    bench = tmp_path / "benchmarks"
    for kind in ("execute", "nbval", "train"):
        (bench / kind).mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\n"
    (bench / "execute" / "03_method.tsv").write_text(header + "40.4\t0:00:40\t1\n")
    (bench / "nbval" / "03_method.tsv").write_text(header + "20.2\t0:00:20\t1\n")
    keys = [j.key for j in plan.models_for("03_method", _parameters("03_method")).jobs()]
    assert len(keys) == 2   # the victim and its R
    for i, key in enumerate(keys):
        (bench / "train" / f"{key}.tsv").write_text(header + f"{30 + i}.0\t0:00:30\t1\n")
    (bench / "train" / "ffffffffffffffffffff.tsv").write_text(header + "999.0\t0:16:39\t1\n")   # another chapter's
    before = {c.source.name: (root / "notebooks" / c.source.name).read_text() for c in CHAPTERS}
    assert book.update_run_boxes(bench, "commit abc", root=root) == ["03_method"]
    text = (root / "notebooks" / "03_method.md").read_text()
    assert ("**Cold cost:** about 61 s on the 2-core build machine (execute 40 s + nbval 20 s: `make book` executes, "
            "`make test` also runs nbval;") in text
    assert "commit abc). It loads 2 models, trained before it by the workflow's training jobs in 61 s" in text
    assert text.count("**Cold cost:**") == 1
    for name, old in before.items():
        if name != "03_method.md":
            assert (root / "notebooks" / name).read_text() == old
    # ... and the workflow orders its jobs by what the box now records
    chapter = next(c for c in book.chapters_from_toc(root) if c.stem == "03_method")
    assert book.recorded_seconds(chapter) == {"execute": 40.0, "nbval": 20.0}


def test_the_longest_recorded_chapter_and_its_models_start_first(tmp_path):
    """Job priorities: a chapter's is the execute seconds its run box records (0 without a box); a model's is above
    that of every chapter that loads it, so that the longest chapter does not start last and run alone."""
    ranks = book.job_priorities({"short": 5.0, "long": 400.0, "free": 0.0}, {"short": ["a", "b"], "long": ["b"]})
    assert ranks == {"short": 5.0, "long": 400.0, "free": 0.0, "a": 6.0, "b": 401.0}
    (tmp_path / "x.md").write_text("# a chapter without a run box\n")
    assert book.recorded_seconds(book.Chapter("x", tmp_path / "x.md", tmp_path / "x.ipynb")) == {
        "execute": 0.0, "nbval": 0.0}
    # the workflow uses them: the dry run prints each chapter job's priority, its run box's seconds
    output = _dry_run(tmp_path, "--cores", "2", "--config", "nbval=0")
    printed = dict(re.findall(r"stem=(\w+)\n\s+priority: ([\d.]+)", output))
    recorded = {c.stem: book.recorded_seconds(c)["execute"] for c in CHAPTERS}
    assert {stem: float(p) for stem, p in printed.items()} == recorded and max(recorded.values()) > 60


# ------------------------------------------------------------------------------------------ the allocator


def test_allocator_env_preloads_tcmalloc_only_when_present_and_wanted(tmp_path, monkeypatch):
    library = tmp_path / "libtcmalloc_minimal.so.4"
    library.write_bytes(b"")
    monkeypatch.setattr(book, "TCMALLOC", (str(tmp_path / "absent.so"), str(library)))
    env = book.allocator_env({"LD_PRELOAD": "/opt/other.so"})
    assert env["LD_PRELOAD"] == f"{library} /opt/other.so" and int(env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) >= 1 << 30
    assert book.allocator_env({"ACTEDIT_TCMALLOC": "0"}) == {}
    assert book.allocator_env({"LD_PRELOAD": str(library)}) == {}          # already preloaded: nothing twice
    monkeypatch.setattr(book, "TCMALLOC", (str(tmp_path / "absent.so"),))
    assert book.allocator_env({}) == {}
    # the training jobs get it with the kernels' variables
    monkeypatch.setattr(book, "TCMALLOC", (str(library),))
    monkeypatch.delenv("ACTEDIT_TCMALLOC", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert book.job_env()["LD_PRELOAD"] == str(library) and book.job_env()["OMP_NUM_THREADS"]


def test_tcmalloc_trains_bitwise_the_same_model(tmp_path):
    """The allocator is a speed choice only: a training run under tcmalloc gives the same weights to the bit."""
    library = next((p for p in book.TCMALLOC if Path(p).is_file()), None)
    if library is None:
        pytest.skip("tcmalloc is not installed (Debian libtcmalloc-minimal4)")
    script = ("import hashlib, torch\n"
              "from actedit.models import build_model\n"
              "from actedit.training import TrainConfig, fit\n"
              "torch.manual_seed(0)\n"
              "x, y = torch.rand(384, 1, 28, 28), torch.randint(0, 10, (384,))\n"
              "m = build_model('cnn', num_classes=10, channels=1, size=28)\n"
              "fit(m, x, y, config=TrainConfig(epochs=2, batch_size=64), progress=False)\n"
              "h = hashlib.sha256()\n"
              "[h.update(t.detach().numpy().tobytes()) for t in m.state_dict().values()]\n"
              "print(h.hexdigest())\n")
    digests = []
    for preload in ({}, {"LD_PRELOAD": library}):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "ACTEDIT_CACHE": str(tmp_path), **preload}
        env.pop("LD_PRELOAD", None) if not preload else None
        out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                             check=True)
        digests.append(out.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1] and len(digests[0]) == 64
