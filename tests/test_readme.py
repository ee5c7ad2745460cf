"""The README's examples run as written.

* Every ```python block of README.md is executed in a fresh namespace, from the repository root,
  in README order (each block is self-contained: it loads what it uses).
* Every command of a ```bash block that starts with ``bert-lrp `` (with its ``\\`` continuation
  lines) runs as ``python -m bert_lrp ...`` with the same arguments, from the repository root, and
  must exit 0. Outputs go to a temporary folder: the value of an output option (``--out``,
  ``--output-dir``, ``--work-dir``, ``--html``, ``--json``, ``--jsonl``) and every argument under
  ``runs/`` is moved under it, so a later command reads what an earlier one wrote there (e.g.
  ``inspect mask --model runs/tiny-bert`` after ``convert --out runs/tiny-bert``); a command run
  alone first runs the command that writes its input.

What is not run is not collected (no pytest.skip: the suite reports 0 skipped), and the README
says why, next to the example:

* a command with a ``# needs: ...`` comment (on its line, or on a line of its own just above it),
  and a python block holding one, needs something outside the repository: data or a model you
  download, or the output of a command that is not run. The comment names it.
* ``NOT_RUN`` below, keyed by the start of the command, for a reason that cannot be written next
  to the example; empty at present.

Other ```bash lines (``make``, ``pip``, ``torchrun``, ``python ...``) are not run here: they install
packages or take minutes.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
NEEDS = "# needs:"
OUTPUT_OPTIONS = ("--out", "--output-dir", "--work-dir", "--html", "--json", "--jsonl")
COMMANDS = ("explain", "evaluate", "train", "convert", "inspect", "benchmark")  # each needs a runnable example
# command prefix -> why it is not run (for what a "# needs:" comment next to the example cannot say)
NOT_RUN: Dict[str, str] = {}
TIMEOUT = 600  # seconds per command; the slowest README command takes about 10 s on 2 idle cores


@dataclass
class Block:
    language: str
    line: int            # README line of the block's first line of code (1-based)
    section: str         # the "## " heading above it
    lines: List[str]


@dataclass
class Command:
    line: int
    section: str
    text: str            # joined continuation lines, comments included
    args: List[str]      # after "bert-lrp", comments dropped
    needs: Optional[str]

    @property
    def name(self) -> str:
        return f"README.md:{self.line} bert-lrp {' '.join(self.args[:2] if self.args[:1] == ['inspect'] else self.args[:1])}"


def readme_blocks(text: str) -> List[Block]:
    blocks: List[Block] = []
    section = ""
    current: Optional[Block] = None
    for number, line in enumerate(text.splitlines(), 1):
        if current is not None:
            if line.strip() == "```":
                blocks.append(current)
                current = None
            else:
                current.lines.append(line)
        elif line.startswith("```"):
            current = Block(line[3:].strip().lower(), number + 1, section, [])
        elif line.startswith("## "):
            section = line[3:].strip()
    assert current is None, f"README.md: the block opened at line {current.line - 1} is not closed"
    return blocks


def _needs(comment: str) -> Optional[str]:
    at = comment.find(NEEDS)
    return comment[at + len(NEEDS):].strip() if at >= 0 else None


def bash_commands(blocks: List[Block]) -> List[Command]:
    commands: List[Command] = []
    for block in blocks:
        if block.language not in ("bash", "sh", "shell"):
            continue
        index, above = 0, None
        while index < len(block.lines):
            start, text = index, block.lines[index]
            while text.rstrip().endswith("\\") and index + 1 < len(block.lines):
                index += 1
                text = text.rstrip()[:-1] + " " + block.lines[index].strip()
            index += 1
            stripped = text.strip()
            if stripped.startswith("#"):
                above = _needs(stripped)
                continue
            if stripped.startswith("bert-lrp "):
                words = shlex.split(stripped, comments=True)
                needs = _needs(stripped) or above
                commands.append(Command(block.line + start, block.section, stripped, words[1:], needs))
            above = None
    return commands


def python_blocks(blocks: List[Block]) -> List[Block]:
    return [b for b in blocks if b.language in ("python", "py") and not any(NEEDS in line for line in b.lines)]


def not_run(command: Command) -> Optional[str]:
    if command.needs:
        return command.needs
    for prefix, why in NOT_RUN.items():
        if command.text.startswith(prefix):
            return why
    return None


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
ALL_COMMANDS = bash_commands(BLOCKS)
RUN = [c for c in ALL_COMMANDS if not_run(c) is None]
PYTHON = python_blocks(BLOCKS)


def _is_output_path(value: str) -> bool:
    return value == "runs" or value.startswith("runs/")


def rewrite(args: List[str], tmp: Path) -> List[str]:
    """The arguments with every output, and every path under runs/, moved under ``tmp``."""
    out: List[str] = []
    for i, arg in enumerate(args):
        after_output_option = i > 0 and args[i - 1] in OUTPUT_OPTIONS
        if "=" in arg and arg.split("=", 1)[0] in OUTPUT_OPTIONS:
            option, value = arg.split("=", 1)
            out.append(f"{option}={tmp / value}")
        elif after_output_option or _is_output_path(arg):
            out.append(str(tmp / arg))
        else:
            out.append(arg)
    return out


def outputs(command: Command) -> List[str]:
    return [command.args[i + 1] for i, a in enumerate(command.args[:-1]) if a in OUTPUT_OPTIONS]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readme")


def run_command(command: Command, tmp: Path, done: Dict[int, bool]) -> None:
    """Run ``command`` (first the README command that writes any runs/ input it reads)."""
    own = set(outputs(command))
    for arg in command.args:
        if _is_output_path(arg) and arg not in own and not (tmp / arg).exists():
            producers = [c for c in RUN if arg in outputs(c) and c.line < command.line]
            assert producers, f"{command.name} reads {arg}, which no earlier README command writes"
            if not done.get(producers[-1].line):
                run_command(producers[-1], tmp, done)
    args = rewrite(command.args, tmp)
    env = dict(os.environ, BERT_LRP_DEBUG="1", NO_COLOR="1")
    result = subprocess.run([sys.executable, "-m", "bert_lrp", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, (
        f"{command.name} exited with {result.returncode}\n$ python -m bert_lrp {shlex.join(args)}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}")
    done[command.line] = True


_DONE: Dict[int, bool] = {}


@pytest.mark.parametrize("command", RUN, ids=[c.name for c in RUN])
def test_readme_command_runs(command: Command, workdir: Path) -> None:
    run_command(command, workdir, _DONE)


@pytest.mark.parametrize("block", PYTHON, ids=[f"README.md:{b.line} ({b.section})" for b in PYTHON])
def test_readme_python_block_runs(block: Block, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    code = compile("\n".join(block.lines) + "\n", f"README.md:{block.line}", "exec")
    exec(code, {"__name__": "__readme__"})  # a fresh namespace per block


def test_readme_has_a_runnable_example_of_every_command() -> None:
    shown = {c.args[0] for c in RUN if c.args}
    assert set(COMMANDS) <= shown, f"no runnable README example of: {sorted(set(COMMANDS) - shown)}"
    assert PYTHON, "no python block found in README.md"


def test_every_command_that_is_not_run_says_why() -> None:
    for command in ALL_COMMANDS:
        why = not_run(command)
        assert why is None or why.strip(), f"{command.name}: '# needs:' without a reason"


def test_the_parser_reads_continuations_and_needs_comments(tmp_path) -> None:
    text = "\n".join([
        "## Section", "```bash", "# a comment", "bert-lrp explain \\", "    --methods gi \"a b\"   # fine",
        "bert-lrp explain --file x.txt   # needs: x.txt", "# needs: a download", "bert-lrp convert --out runs/m",
        "make test", "```", "```python", "x = 1", "```", "```python", "# needs: a model", "```"])
    blocks = readme_blocks(text)
    commands = bash_commands(blocks)
    assert [(c.line, c.args, c.needs) for c in commands] == [
        (4, ["explain", "--methods", "gi", "a b"], None),
        (6, ["explain", "--file", "x.txt"], "x.txt"),
        (8, ["convert", "--out", "runs/m"], "a download")]
    assert [b.line for b in python_blocks(blocks)] == [12]
    assert rewrite(["x", "--out", "o", "--html=h.html", "--model", "runs/m", "runs"], tmp_path) == [
        "x", "--out", str(tmp_path / "o"), f"--html={tmp_path / 'h.html'}", "--model", str(tmp_path / "runs/m"),
        str(tmp_path / "runs")]


def test_the_readme_is_a_five_minute_read() -> None:
    """What it is, the two commands, install, classify, explain, command line, models, links: at most
    1,300 words and 250 lines; measurements and protocols live in docs/."""
    text = README.read_text(encoding="utf-8")
    assert len(text.split()) <= 1300, f"README.md has {len(text.split())} words"
    assert len(text.splitlines()) <= 250
    assert text.splitlines()[0] == "# bert-lrp" and "make explain" in text[:1200] and "make test" in text[:1200]
