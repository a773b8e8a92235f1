"""The Dockerfile: built when asked (docker on PATH and VITVIZ_DOCKER_BUILD=1), otherwise linted here.

Building needs the network (PyTorch's CPU wheel index), so by default the Dockerfile is only read:
it must start from an image, run as a non-root user, answer a health check on Streamlit's
/_stcore/health, expose 8501, run `streamlit run app.py` on every interface, install the CPU torch
of requirements.txt's pin, and copy every file the app reads at run time.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# What the app reads at run time, relative to the repository root.
NEEDED = ("app.py", "requirements.txt", "vitviz/", "pages/", "assets/", ".streamlit/config.toml")
ROOT_USERS = {"root", "0", "0:0", "root:root"}


def torch_pin(requirements: str) -> str | None:
    found = re.search(r"^torch==([\w.+-]+)\s*$", requirements, re.MULTILINE)
    return found.group(1) if found else None


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, continued lines joined."""
    result, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):  # a comment may also sit inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        if whole:
            keyword, _, rest = whole.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def words(arguments: str) -> list[str]:
    """An instruction's arguments as words, from the exec form (a JSON list) or the shell form."""
    if arguments.startswith("["):
        return re.findall(r'"((?:[^"\\]|\\.)*)"', arguments)
    try:
        return shlex.split(arguments)
    except ValueError:  # unbalanced quotes
        return arguments.split()


def copied(arguments: str) -> list[str]:
    """The build-context sources of one COPY (none when it copies from another stage)."""
    parts = [part for part in words(arguments) if part]
    if any(part.startswith("--from") for part in parts):
        return []
    parts = [part for part in parts if not part.startswith("--")]
    return [source.removeprefix("./") or "." for source in parts[:-1]]


def covers(source: str, needed: str) -> bool:
    source = source.rstrip("/")
    return source in (".", "") or needed.rstrip("/") == source or needed.startswith(source + "/")


def lint(text: str, requirements: str) -> list[str]:
    """What is wrong with this Dockerfile for vitviz, one sentence each; empty when nothing is."""
    steps = instructions(text)
    names = [name for name, _ in steps]
    problems = []
    if "FROM" not in names or names[0] not in ("FROM", "ARG"):
        problems.append("It must start from a base image (FROM).")
    cmds = [i for i, name in enumerate(names) if name == "CMD"]
    if not cmds:
        problems.append("It has no CMD.")
    else:
        cmd = words(steps[cmds[-1]][1])
        if "streamlit" not in " ".join(cmd) or "run" not in cmd or "app.py" not in cmd:
            problems.append("The CMD must run `streamlit run app.py`.")
        if "0.0.0.0" not in cmd:
            problems.append("The CMD must listen on every interface (--server.address 0.0.0.0).")
        users = [args.split()[0] for name, args in steps[: cmds[-1]] if name == "USER" and args]
        if not users or users[-1] in ROOT_USERS:
            problems.append("A non-root USER must be set before the CMD.")
    healthchecks = [args for name, args in steps if name == "HEALTHCHECK"]
    if not any("/_stcore/health" in args for args in healthchecks):
        problems.append("A HEALTHCHECK must ask Streamlit's /_stcore/health.")
    if not any("8501" in args.split() or "8501/tcp" in args.split() for name, args in steps if name == "EXPOSE"):
        problems.append("It must EXPOSE 8501.")
    runs = " ".join(args for name, args in steps if name == "RUN")
    pin = torch_pin(requirements)
    installed = re.findall(r"torch==([\w.+-]+)", runs)
    if pin is None or installed != [pin]:
        problems.append(f"It must install torch=={pin} as requirements.txt pins it, not {installed or 'nothing'}.")
    if "download.pytorch.org/whl/cpu" not in runs:
        problems.append("torch must come from the CPU wheel index (download.pytorch.org/whl/cpu).")
    sources = [source for name, args in steps if name in ("COPY", "ADD") for source in copied(args)]
    for needed in NEEDED:
        if not any(covers(source, needed) for source in sources):
            problems.append(f"{needed} is not copied into the image.")
    return problems


def test_the_dockerfile_has_what_a_deployment_needs():
    requirements = (ROOT / "requirements.txt").read_text()
    assert torch_pin(requirements), "requirements.txt must pin torch exactly"
    assert lint(DOCKERFILE.read_text(), requirements) == []


GOOD = """\
# a comment
FROM python:3.11-slim
COPY requirements.txt /tmp/
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \\
 && pip install -r /tmp/requirements.txt
RUN useradd app
WORKDIR /app
COPY requirements.txt app.py ./
COPY vitviz/ vitviz/
COPY pages pages
COPY ./assets/ assets/
COPY .streamlit/config.toml .streamlit/config.toml
USER app
EXPOSE 8501
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8501/_stcore/health')"
CMD ["streamlit", "run", "app.py", "--server.address", "0.0.0.0"]
"""
PINNED = "torch==2.13.0\nstreamlit==1.67.0\n"


def test_the_lint_passes_a_good_dockerfile_and_copying_everything_counts():
    assert lint(GOOD, PINNED) == []
    everything = re.sub(r"^COPY (?!requirements.txt /tmp/).*\n", "", GOOD, flags=re.MULTILINE)
    assert "vitviz/ is not copied into the image." in lint(everything, PINNED)
    assert lint(everything.replace("WORKDIR /app\n", "WORKDIR /app\nCOPY . .\n"), PINNED) == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda t: t.replace("FROM python:3.11-slim\n", ""), "FROM"),
        (lambda t: t.replace("USER app\n", ""), "non-root USER"),
        (lambda t: t.replace("USER app\n", "USER root\n"), "non-root USER"),
        (lambda t: t.replace("USER app\n", "").replace("CMD [", "USER app\nCMD ["), None),  # still fine
        (lambda t: t.replace("USER app\n", "") + "USER app\n", "non-root USER"),  # set after the CMD
        (lambda t: t.replace("/_stcore/health", "/"), "HEALTHCHECK"),
        (lambda t: t.replace("EXPOSE 8501", "EXPOSE 8080"), "EXPOSE 8501"),
        (lambda t: t.replace('"app.py", ', '"other.py", '), "streamlit run app.py"),
        (lambda t: t.replace('"0.0.0.0"', '"127.0.0.1"'), "every interface"),
        (lambda t: t.replace("torch==2.13.0", "torch==2.12.0"), "torch==2.13.0"),
        (lambda t: t.replace("torch==2.13.0 ", "torch "), "torch==2.13.0"),
        (lambda t: t.replace("https://download.pytorch.org/whl/cpu", "https://pypi.org/simple"), "CPU wheel"),
        (lambda t: t.replace("COPY pages pages\n", ""), "pages/ is not copied"),
        (lambda t: t.replace("COPY .streamlit/config.toml .streamlit/config.toml\n", ""), ".streamlit/config.toml"),
        (lambda t: t.replace("COPY vitviz/ vitviz/\n", "COPY --from=build vitviz/ vitviz/\n"), "vitviz/ is not copied"),
        (lambda t: t.replace("requirements.txt app.py ./", "requirements.txt ./"), "app.py is not copied"),
    ],
)
def test_the_lint_finds_a_broken_dockerfile(change, complaint):
    problems = lint(change(GOOD), PINNED)
    if complaint is None:
        assert problems == []
    else:
        assert any(complaint in problem for problem in problems), problems


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore's `patterns` keep `path` out of the build context (the last matching pattern
    decides, and a pattern matching a folder covers what is inside; close to Docker's rules, not all of them)."""
    parts = path.split("/")
    folders = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        if any(fnmatch.fnmatchcase(name, pattern.lstrip("!").strip("/")) for name in folders):
            result = not keep
    return result


def test_the_build_context_holds_what_the_app_needs_and_no_secrets():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    needed = [path for name in NEEDED for path in ([ROOT / name] if (ROOT / name).is_file() else (ROOT / name).rglob("*"))
              if path.is_file() and "__pycache__" not in path.parts]
    assert len(needed) > 40
    left_out = [str(path.relative_to(ROOT)) for path in needed if ignored(str(path.relative_to(ROOT)), patterns)]
    assert left_out == []
    for private in (".streamlit/secrets.toml", ".git/HEAD", ".venv/bin/python", "tests/conftest.py",
                    "screenshots/welcome.png", "vitviz/__pycache__/model.cpython-311.pyc"):
        assert ignored(private, patterns), private
    assert not ignored("vitviz/model.py", ["*", "!vitviz/"]) and ignored("vitviz/model.py", ["!vitviz/", "*"])


@pytest.mark.skipif(not (shutil.which("docker") and os.environ.get("VITVIZ_DOCKER_BUILD") == "1"),
                    reason="building needs docker and the network: set VITVIZ_DOCKER_BUILD=1 to build")
def test_the_image_builds_with_a_cpu_torch():
    tag = "vitviz-test:latest"
    build = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    check = "import torch, streamlit, vitviz.ui.navigation; assert torch.version.cuda is None, torch.version.cuda"
    ran = subprocess.run(["docker", "run", "--rm", tag, "python", "-c", check], capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    user = subprocess.run(["docker", "run", "--rm", tag, "id", "-u"], capture_output=True, text=True, timeout=300)
    assert user.stdout.strip() not in ("", "0"), user.stdout
