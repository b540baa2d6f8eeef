"""The shell commands and Python snippets of README.md and docs/*.md, as tests/test_docs.py runs them.

A fenced block tagged ``bash``, ``sh``, ``console`` or ``python`` is collected; other tags (``yaml``, ``json``, plain
output) are not code to run. Each command of a shell block (one logical line: ``\\`` continues it; comment-only and
blank lines are not commands; a ``$ `` prompt is dropped) and each Python block is one ``Snippet``, named
``FILE:LINE`` after the line where it starts.

HTML comments right above a block (blank lines between them allowed) steer the test and are invisible on GitHub:

    <!-- doc-test: skip (REASON) -->          the whole block is reported as skipped, with REASON
    <!-- doc-test: skip "TEXT" (REASON) -->   the block's commands that contain TEXT are skipped, with REASON
    <!-- doc-test: name NAME -->              a Python block others can build on ...
    <!-- doc-test: needs NAME -->             ... this Python block runs after the block named NAME (e.g. the numpy
                                              decoder of docs/inference.md, whose functions later snippets call)

Skips are for what this machine cannot do (a GPU, several GPUs, a phone, the network, ultralytics); everything
else runs. Install commands follow one rule instead of markers (``install_free``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SHELL_TAGS = {"bash", "sh", "shell", "console"}
CODE_TAGS = SHELL_TAGS | {"python", "py"}
DIRECTIVE = re.compile(r"<!--\s*doc-test:\s*(?P<verb>skip|name|needs)\s*(?P<rest>.*?)\s*-->")
SKIP_ARGS = re.compile(r'^(?:"(?P<text>[^"]+)"\s*)?\((?P<reason>.+)\)$')

# Install steps are not run: the test runs inside the environment they build (the one running pytest). In a `&&`
# chain they are dropped and the rest runs; a command that only installs is reported as skipped.
INSTALL = re.compile(r"^\s*(?:python3? -m venv\b|\.\s+\S*activate\b|source\s+\S*activate\b|\S*pip3? install\b)")


@dataclass
class Snippet:
    file: str            # relative to the project root, e.g. "docs/inference.md"
    line: int            # 1-based line of the command / the block's first code line
    lang: str            # "shell" or "python"
    code: str            # one shell command (continuations joined), or the whole Python block
    skip: str | None = None
    name: str | None = None
    needs: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def _directives(lines: list[str], fence: int) -> list[tuple[str, str]]:
    """The doc-test comments directly above the fence at index ``fence`` (other comments and blanks pass)."""
    found, i = [], fence - 1
    while i >= 0 and (not lines[i].strip() or lines[i].lstrip().startswith("<!--")):
        m = DIRECTIVE.search(lines[i])
        if m:
            found.append((m["verb"], m["rest"]))
        i -= 1
    return found[::-1]


def _shell_commands(body: list[tuple[int, str]]) -> list[tuple[int, str]]:
    commands, current, start = [], [], None
    for number, text in body:
        stripped = text.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if not current:
            start = number
            if stripped.startswith("$ "):
                stripped = stripped[2:]
        if stripped.endswith("\\"):
            current.append(stripped[:-1].rstrip())
            continue
        current.append(stripped)
        commands.append((start, " ".join(current)))
        current = []
    if current:
        commands.append((start, " ".join(current)))
    return commands


def install_free(command: str) -> str:
    """``command`` without its install steps (``python3 -m venv``, ``. .venv/bin/activate``, ``pip install``):
    what is left of a ``&&`` chain, "" when it only installs."""
    return " && ".join(part.strip() for part in command.split("&&") if not INSTALL.match(part))


def collect(path: Path, root: Path) -> list[Snippet]:
    rel = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, tag = m.group(1), m.group(2), m.group(3).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [(n + 1, lines[n][len(indent):] if lines[n].startswith(indent) else lines[n].lstrip())
                for n in range(i + 1, j)]
        if tag in CODE_TAGS:
            skip_all, skip_some, name, needs = None, [], None, []
            for verb, rest in _directives(lines, i):
                if verb == "skip":
                    args = SKIP_ARGS.match(rest)
                    assert args, f"{rel}:{i + 1}: doc-test skip needs a (reason): {rest!r}"
                    if args["text"]:
                        skip_some.append((args["text"], args["reason"]))
                    else:
                        skip_all = args["reason"]
                elif verb == "name":
                    name = rest
                else:
                    needs.append(rest)
            if tag in SHELL_TAGS:
                for number, command in _shell_commands(body):
                    reason = skip_all or next((r for text, r in skip_some if text in command), None)
                    if reason is None and not install_free(command):
                        reason = "installs packages: the test runs in the environment this builds"
                    snippets.append(Snippet(rel, number, "shell", command, reason))
            else:
                code = "\n".join(text for _, text in body) + "\n"
                snippets.append(Snippet(rel, i + 2, "python", code, skip_all, name, needs))
        i = j + 1
    return snippets


def doc_files(root: Path) -> list[Path]:
    """README.md and docs/*.md (docs/notes/ are session notes, not documentation)."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def collect_all(root: Path) -> list[Snippet]:
    return [s for path in doc_files(root) for s in collect(path, root)]


# ------------------------------------------------------------------------------ running commands without start-up
# Most of a tool's run on 2 cores is interpreter start-up and imports (torch, Hydra, matplotlib: ~5 s each, 15 s on
# a busy machine), paid again by each of ~80 commands. So a command that is only `[VAR=value ...] python SCRIPT
# ARGS` or `ghostdet COMMAND ARGS` runs in a fork of a server process that has imported them once: the child sets
# up what the interpreter would (working directory, environment, sys.argv, sys.path[0] = the script's folder,
# PYTHONPATH entries after it) and runs the script as __main__. Anything with other shell syntax runs in bash.
WARM_MODULES = ["numpy", "torch", "torchvision", "cv2", "PIL.Image", "hydra", "omegaconf", "matplotlib.pyplot",
                "albumentations", "pycocotools.coco", "ghostdet.cli", "ghostdet.cli.train", "ghostdet.cli.eval",
                "ghostdet.cli.detect", "ghostdet.cli.export", "ghostdet.cli.benchmark", "ghostdet.cli.check_data"]
SHELL_SYNTAX = re.compile(r"[;&|<>`$(){}*?~\\]")  # outside quotes: bash does something with these


def plain_invocation(command: str) -> dict | None:
    """``{"env", "kind", "path", "args"}`` of a command the server can run, None when it needs bash."""
    import shlex

    code = command.split(" #", 1)[0]
    if SHELL_SYNTAX.search(re.sub(r"'[^']*'|\"[^\"]*\"", "", code)):
        return None
    tokens, env = shlex.split(code), {}
    while tokens and re.match(r"^[A-Za-z_]\w*=", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        env[key] = value
    if len(tokens) >= 2 and tokens[0] in ("python", "python3") and tokens[1].endswith(".py"):
        return {"env": env, "kind": "script", "path": tokens[1], "args": tokens[2:]}
    if tokens and tokens[0] == "ghostdet":
        return {"env": env, "kind": "ghostdet", "path": "ghostdet", "args": tokens[1:]}
    return None


def _child(request: dict) -> int:
    import os
    import runpy
    import sys
    import traceback

    os.chdir(request["cwd"])
    os.environ.update(request["env"])
    for fd, name in ((1, "out"), (2, "err")):
        os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    import signal

    signal.alarm(int(request["timeout"]))
    entries = [os.path.abspath(p) for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    try:
        if request["kind"] == "python":
            sys.argv, sys.path[0] = ["-"], ""
            sys.path[1:1] = entries
            exec(compile(request["code"], "<stdin>", "exec"), {"__name__": "__main__"})
        elif request["kind"] == "script":
            sys.argv = [request["path"], *request["args"]]
            sys.path[0] = os.path.dirname(os.path.abspath(request["path"]))
            sys.path[1:1] = entries
            runpy.run_path(request["path"], run_name="__main__")
        else:
            from ghostdet.cli import main

            sys.argv = ["ghostdet", *request["args"]]
            sys.path[1:1] = entries
            code = main()
            raise SystemExit(code)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def serve() -> None:
    """Read one JSON request a line on stdin, run it in a forked child, answer ``{"rc": exit status}``."""
    import importlib
    import json
    import os
    import sys

    for module in WARM_MODULES:
        importlib.import_module(module)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os._exit(_child(request))
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
