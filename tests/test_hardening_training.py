"""Training state read as untrusted, and one run per output folder.

* resuming never runs code planted in a checkpoint: a pickle with a ``__reduce__`` that would
  create a marker file — as the old ``state.pt``, as the tensor file a valid ``checkpoint.json``
  names, behind a symlink or a path out of the folder — is refused with one typed line, and the
  marker never appears; a damaged or hostile ``checkpoint.json`` is the same typed line;
* a second ``mm-rag train`` on an ``--out`` another run holds is refused with one line (exit 2)
  before any model loads; a lock file left by a run that died never blocks the next.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mm_rag_components.errors import ConfigError, MMRagError
from mm_rag_components.training import trainer
from mm_rag_components.training.lock import LOCK_NAME, output_lock
from bounds import time_limit
from special_files import KINDS, make_special

CASES = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
IDENTITY = {"model": "tiny", "data": "0123456789abcdef", "seed": 0}


class Planted:
    """Unpickling this creates ``marker`` (what an attacker's payload would do instead)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def payload(marker: Path, how: str) -> bytes:
    """A malicious checkpoint: a raw pickle (protocol 0-5) or torch's zip format around one."""
    state = {"step": 2, "losses": [0.5], "identity": IDENTITY, "trainable": {}, "evil": Planted(marker)}
    if how.startswith("pickle-"):
        return pickle.dumps(state, protocol=int(how.split("-")[1]))
    path = marker.parent / "made.pt"
    torch.save(state, path)
    return path.read_bytes()


def tiny() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def plant(folder: Path, layout: str, data: bytes) -> None:
    """Put ``data`` where resuming would look, the way ``layout`` says."""
    folder.mkdir(parents=True)
    name = "state-2.pt"
    if layout == "old state.pt":
        (folder / "state.pt").write_bytes(data)
        return
    if layout == "named by checkpoint.json":
        (folder / name).write_bytes(data)
    elif layout == "symlink out":
        (folder.parent / "elsewhere.pt").write_bytes(data)
        (folder / name).symlink_to(folder.parent / "elsewhere.pt")
    elif layout == "path out of the folder":
        (folder.parent / "evil.pt").write_bytes(data)
        name = "../evil.pt"
    meta = {"format": "mm-rag-checkpoint-2", "step": 2, "losses": [0.5], "identity": IDENTITY, "tensors": name,
            "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "checkpoint.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["pickle-0", "pickle-2", "pickle-4", "pickle-5", "torch.save"])
@pytest.mark.parametrize("layout", ["old state.pt", "named by checkpoint.json", "symlink out", "path out of the folder"])
def test_a_planted_pickle_never_runs_on_resume(tmp_path, how, layout):
    marker = tmp_path / "MARKER"
    plant(tmp_path / "checkpoint", layout, payload(marker, how))
    model, optimizer = tiny()
    with pytest.raises(ConfigError) as info:
        trainer._load_checkpoint(tmp_path / "checkpoint", model, optimizer, IDENTITY)
    assert not marker.exists(), "code planted in the checkpoint ran"
    message = str(info.value)
    assert "\n" not in message and ("refused" in message or "older version" in message or "cannot read" in message
                                    or "must name a state" in message), message


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=12)
meta_damage = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),  # any JSON that is not a checkpoint's
    st.binary(max_size=64),  # not JSON at all
    st.integers(2_000, 50_000).map(lambda d: b"[" * d + b"]" * d),  # nested past any limit
    st.fixed_dictionaries({"format": st.just("mm-rag-checkpoint-2"), "step": json_values, "losses": json_values,
                           "identity": st.just(IDENTITY), "tensors": json_values, "sha256": json_values}).map(lambda m: json.dumps(m).encode()),
)


@CASES
@given(damage=meta_damage)
def test_a_damaged_checkpoint_json_is_one_typed_line(tmp_path_factory, damage):
    from mm_rag_components.training.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    model, optimizer = tiny()
    save_checkpoint(folder, step=2, losses=[0.5], identity=IDENTITY, params=dict(model.named_parameters()), optimizer=optimizer)
    (folder / "checkpoint.json").write_bytes(damage)
    with pytest.raises(ConfigError) as info:
        trainer._load_checkpoint(folder, *tiny(), IDENTITY)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["checkpoint.json", "state-2.pt"])
def test_checkpoint_files_that_are_not_regular_files_are_refused_without_waiting(tmp_path, kind, name):
    from mm_rag_components.training.checkpoint import save_checkpoint

    folder = tmp_path / "checkpoint"
    model, optimizer = tiny()
    save_checkpoint(folder, step=2, losses=[0.5], identity=IDENTITY, params=dict(model.named_parameters()), optimizer=optimizer)
    (folder / name).unlink()
    make_special(folder / name, kind)
    with time_limit(60), pytest.raises(ConfigError):  # the limit is a hang guard
        trainer._load_checkpoint(folder, *tiny(), IDENTITY)


def test_a_checkpoint_round_trips_and_refuses_another_run(tmp_path):
    from mm_rag_components.training.checkpoint import save_checkpoint

    model, optimizer = tiny()
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "c", step=7, losses=[1.0, 0.5], identity=IDENTITY, params=dict(model.named_parameters()), optimizer=optimizer)
    save_checkpoint(tmp_path / "c", step=9, losses=[1.0, 0.5, 0.25], identity=IDENTITY, params=dict(model.named_parameters()), optimizer=optimizer)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["checkpoint.json", "state-9.pt"]  # the older state is gone
    fresh, fresh_optimizer = tiny()
    torch.nn.init.zeros_(fresh.weight)
    assert trainer._load_checkpoint(tmp_path / "c", fresh, fresh_optimizer, IDENTITY) == (9, [1.0, 0.5, 0.25])
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_optimizer.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(ConfigError, match="different run"):
        trainer._load_checkpoint(tmp_path / "c", *tiny(), {**IDENTITY, "data": "another"})
    other = torch.nn.Linear(4, 3)
    with pytest.raises(ConfigError, match="shape"):
        trainer._load_checkpoint(tmp_path / "c", other, torch.optim.AdamW(other.parameters()), IDENTITY)
    assert trainer._load_checkpoint(tmp_path / "none", *tiny(), IDENTITY) == (0, [])


# ------------------------------------------------------------------ one run per output folder


@pytest.fixture()
def pairs_file(tmp_path) -> Path:
    rows = [{"query": f"q{i}", "candidate": f"c{i}", "label": i % 2, "group": f"g{i}"} for i in range(6)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _train(pairs: Path, out: Path, *extra: str) -> int:
    from mm_rag_components.cli.train_commands import add_train_arguments, cmd_train

    # the model does not exist: a run that gets past the lock fails on it, a refused one never reaches it
    argv = [str(pairs), "--model", str(out.parent / "no-such-model"), "--out", str(out), "--quiet", *extra]
    return cmd_train(add_train_arguments(argparse.ArgumentParser()).parse_args(argv))


HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mm_rag_components.training.lock import output_lock
    with output_lock(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.read()
    """
)


@pytest.mark.parametrize("holder", ["another process", "this process"])
@pytest.mark.parametrize("extra", [[], ["--resume"], ["--checkpoint-every", "1"]])
def test_a_second_run_on_the_same_out_is_refused_in_one_line(tmp_path, pairs_file, capsys, holder, extra):
    out = tmp_path / "my-reranker"
    if holder == "another process":
        child = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
        assert child.stdout.readline().strip() == "held"
        try:
            status = _train(pairs_file, out, *extra)
        finally:
            child.communicate("", timeout=60)
        pid = str(child.pid)
    else:
        with output_lock(out):
            status = _train(pairs_file, out, *extra)
        pid = str(os.getpid())
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err
    assert f"another training run (process {pid}) is writing to {out}" in err
    assert not (out / LOCK_NAME).exists()  # the holder cleaned up when it finished
    assert _train(pairs_file, out) == 2 and "no-such-model" in capsys.readouterr().err  # free again: the run goes on


@CASES
@given(content=st.binary(max_size=40), mode=st.sampled_from([0o644, 0o600]))
def test_a_lock_file_left_by_a_dead_run_never_blocks(tmp_path_factory, content, mode):
    out = tmp_path_factory.mktemp("out")
    (out / LOCK_NAME).write_bytes(content)  # e.g. a pid of a process killed with -9
    os.chmod(out / LOCK_NAME, mode)
    with output_lock(out):
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (out / LOCK_NAME).exists() and out.is_dir()


def test_the_lock_leaves_no_trace(tmp_path):
    with output_lock(tmp_path / "new"):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()  # created for a run that wrote nothing: removed again
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / LOCK_NAME).symlink_to(tmp_path / "target")
    with pytest.raises(MMRagError, match="cannot lock"):
        with output_lock(tmp_path / "held"):
            pass
    assert not (tmp_path / "target").exists()
