"""What a local Neo4j runs: the launcher and Neo4j's jars (and Open GDS's), built and fetched from
Maven Central once per version of their Maven modules, and the JVM.

The launcher (``graph/launcher/``, a Maven module) opens an embedded Neo4j with Bolt on
127.0.0.1; its jars live in ``<cache>/launcher/<hash>``, GDS's in ``<cache>/gds/<hash>``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from mmgraph.graph.local_neo4j.errors import LauncherBuildError, Neo4jStartError, tail

logger = logging.getLogger(__name__)

LAUNCHER_SOURCE = Path(__file__).parents[1] / "launcher"
GDS_SOURCE = LAUNCHER_SOURCE / "gds"
LAUNCHER_CLASS = "io.mmgraph.launcher.Neo4jLauncher"
LAUNCHER_JAR = Path("target") / "mmgraph-neo4j-launcher.jar"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# Phrases in Maven's output that mean the artifacts could not be downloaded.
_NETWORK_FAILURES = (
    "Could not transfer artifact",
    "Could not resolve dependencies",
    "Could not resolve artifact",
    "Non-resolvable",
    "UnknownHostException",
    "Connection refused",
    "Connect timed out",
    "Network is unreachable",
    "Unknown host",
)


def ensure_launcher(cache: Path) -> Path:
    """Build the launcher once per source version and return its folder.

    The folder (``<cache>/launcher/<hash of the sources>``) holds ``lib/*.jar`` (Neo4j and its
    dependencies) and ``target/mmgraph-neo4j-launcher.jar``. A marker written after a successful
    build makes later calls return at once; a file lock keeps two processes from building at once;
    an interrupted build is redone. The first build downloads about 120 MB from Maven Central into
    ``<cache>/m2``.
    """
    sources = [
        LAUNCHER_SOURCE / "pom.xml",
        *sorted(LAUNCHER_SOURCE.glob("src/main/java/**/*.java")),
    ]
    return _ensure_built(Path(cache), "launcher", LAUNCHER_SOURCE, sources, "Neo4j 5.26")


def ensure_gds_plugins(cache: Path) -> Path:
    """Fetch Open GDS's jars once per module version and return the folder holding them.

    The folder (``<cache>/gds/<hash of launcher/gds/pom.xml>/plugins``) holds the jars GDS adds to
    Neo4j's own (about 130, 15 MB); it is both the server's ``plugin_dir`` and part of its
    classpath. Built, marked and locked as :func:`ensure_launcher` does; only a server started with
    ``gds=True`` asks for it.
    """
    sources = [GDS_SOURCE / "pom.xml"]
    return _ensure_built(Path(cache), "gds", GDS_SOURCE, sources, "Open GDS 2.13") / "plugins"


def _ensure_built(cache: Path, kind: str, root: Path, sources: list[Path], what: str) -> Path:
    """Run ``mvn package`` on a copy of the module at ``root`` once per version of its sources.

    Returns ``<cache>/<kind>/<hash of the sources>``; see :func:`ensure_launcher`.
    """
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    build_dir = cache / kind / digest.hexdigest()[:12]
    marker = build_dir / ".built"
    if marker.exists():
        return build_dir
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / f"{build_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            _maven_package(root, sources, build_dir, cache / "m2", what)
            marker.touch()
    return build_dir


def _maven_package(root: Path, sources: list[Path], build_dir: Path, repo: Path, what: str) -> None:
    """Copy the Maven module into ``build_dir`` and run ``mvn package`` there (see its pom)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LauncherBuildError(f"Maven ('mvn') is not on PATH; it is needed once to fetch {what}")
    shutil.rmtree(build_dir, ignore_errors=True)
    for path in sources:
        target = build_dir / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    command = [mvn, "-q", "-B", f"-Dmaven.repo.local={repo}", "package"]
    logger.info("Building %s in %s (downloads from Maven Central)", what, build_dir)
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=build_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if result.returncode != 0:
        output = tail(_ANSI_ESCAPE.sub("", result.stdout))
        if any(phrase in result.stdout for phrase in _NETWORK_FAILURES):
            message = (
                f"Maven could not download {what} from Maven Central "
                "(https://repo.maven.apache.org/maven2): check the network, proxy or mirror "
                "settings; the local Neo4j cannot be built without these artifacts"
            )
        else:
            message = f"Maven failed (exit status {result.returncode}) building {build_dir}"
        raise LauncherBuildError(message, output)
    logger.info("Built %s in %.1f s", what, time.monotonic() - started)


def java() -> str:
    """The ``java`` executable (``$JAVA_HOME/bin`` first)."""
    java = shutil.which("java", path=java_path())
    if java is None:
        raise Neo4jStartError("Java 17+ ('java') is not on PATH or in JAVA_HOME")
    return java


def classpath(launcher: Path, plugins: Path | None) -> str:
    """The server's classpath: Neo4j's jars, the launcher's, and GDS's when loaded."""
    parts = [f"{launcher / 'lib'}/*", str(launcher / LAUNCHER_JAR)]
    if plugins is not None:
        parts.append(f"{plugins}/*")
    return os.pathsep.join(parts)


def java_path() -> str:
    """PATH, preceded by ``$JAVA_HOME/bin`` when JAVA_HOME is set."""
    path = os.environ.get("PATH", os.defpath)
    java_home = os.environ.get("JAVA_HOME")
    return f"{Path(java_home) / 'bin'}{os.pathsep}{path}" if java_home else path
