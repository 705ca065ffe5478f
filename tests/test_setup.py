"""scripts/setup.sh survives being interrupted: a newcomer's Ctrl-C at any moment of a step
leaves something the next run recognises as unfinished and redoes, instead of failing forever.

Each test runs the real script in a scratch copy of the repository's set-up inputs (the Rust
tools are already installed, so those steps pass quickly; `node_modules` is the real one,
linked), interrupts it as a terminal would (SIGINT to its process group), then runs it again.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def checkout(tmp_path):
    """The files scripts/setup.sh reads, in a fresh directory; `node_modules` linked to the
    real one unless a test installs its own."""
    for name in ("Cargo.toml", "Cargo.lock", "package.json", "package-lock.json"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    (tmp_path / "tests").mkdir()
    shutil.copy2(ROOT / "tests" / "requirements.txt", tmp_path / "tests" / "requirements.txt")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    return tmp_path


def terminal_signals():
    """A newcomer's terminal delivers Ctrl-C: SIGINT at its default, even when these tests run
    under a runner that started them in the background with SIGINT ignored (which every child
    would otherwise inherit, making the interruption a no-op)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def setup(checkout):
    return subprocess.Popen(["bash", "scripts/setup.sh"], cwd=checkout, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=terminal_signals)


def interrupt_when(checkout, ready, timeout=300):
    """Starts the set-up, waits until `ready(checkout)`, then presses Ctrl-C."""
    process = setup(checkout)
    deadline = time.time() + timeout
    try:
        while not ready(checkout):
            assert process.poll() is None, "the set-up ended before the moment to interrupt it"
            assert time.time() < deadline, "the moment to interrupt never came"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) != 0, "an interrupted set-up must not report success"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def completes(checkout):
    """The next run succeeds, and leaves every tool working."""
    process = setup(checkout)
    assert process.wait(timeout=900) == 0, "the set-up after an interruption failed"
    python = checkout / ".tools" / "venv" / "bin" / "python"
    for module in ("pytest", "standardwebhooks", "jsonschema", "websockets"):
        subprocess.run([str(python), "-c", f"import {module}"], check=True, timeout=60)
    bin_dir = checkout / "node_modules" / ".bin"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    for tool in ("node", "wrangler", "wasm-opt"):
        subprocess.run([str(bin_dir / tool), "--version"], check=True, capture_output=True,
                       timeout=120, env=env)


def site_packages(checkout):
    return list((checkout / ".tools" / "venv").glob("lib/python*/site-packages"))


def test_interrupted_while_the_virtualenv_is_created(checkout):
    interrupt_when(checkout, lambda c: (c / ".tools" / "venv" / "bin" / "python").exists())
    completes(checkout)


def test_interrupted_while_the_requirements_install(checkout):
    # Interrupted once pip has written the first of the requirements, before the last.
    def installing(c):
        return any(d.name.split("-")[0] not in ("pip", "setuptools")
                   for site in site_packages(c) for d in site.glob("*.dist-info"))
    interrupt_when(checkout, installing)
    completes(checkout)


def test_a_virtualenv_left_with_python_but_no_pip_is_made_again(checkout):
    # The state that was reported: an earlier run stopped right after `python` was linked.
    bin_dir = checkout / ".tools" / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(shutil.which("python3"))
    completes(checkout)


def test_interrupted_while_npm_installs(checkout):
    (checkout / "node_modules").unlink()
    interrupt_when(checkout, lambda c: len(list((c / "node_modules").glob("*"))) > 20)
    completes(checkout)
