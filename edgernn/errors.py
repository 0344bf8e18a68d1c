"""
Errors edgernn raises for problems a user can fix.

Library code raises these; only edgernn.cli (cli/options.py) turns them into click exceptions (one line,
exit code 1 or 2).
Every message says what failed, the numbers involved, and the fix. Raise them `from exc` (never
`from None`) so that EDGERNN_DEBUG=1 can show the chained traceback; `detail` carries text from a
child process (e.g. the TFLite converter worker's own traceback) that only the debug output prints.
"""


class EdgernnError(Exception):
    """Base class: a user-fixable problem. The CLI prints str(err) without a traceback."""

    def __init__(self, *args, detail: str = ""):
        super().__init__(*args)
        self.detail = detail


class DataError(EdgernnError):
    """Input data is missing, malformed or inconsistent."""


class ConfigError(EdgernnError):
    """An option, a config value or a run directory is invalid."""


class ExportError(EdgernnError):
    """An export or conversion failed (including a converter crash)."""


class ArtifactError(EdgernnError):
    """An exported artifact or its manifest is missing, corrupt or does not match."""


class ManifestError(ArtifactError):
    """An artifact's manifest is missing, not valid JSON, fails the schema, or does not match the file."""


class MissingDependencyError(EdgernnError):
    """An optional package is not installed; the message names the pip extra."""


class RuntimeInputError(EdgernnError):
    """Bad input given to a runtime session (shape, dtype, NaN)."""


class ParityError(EdgernnError):
    """An artifact failed the parity gate."""


class TargetError(EdgernnError):
    """A benchmark target (local, ssh, adb) could not be reached or failed."""


def require(module: str, extra: str):
    """Import `module` or raise MissingDependencyError naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised via tests that hide modules
        raise MissingDependencyError(
            f"{module} is not installed ({exc}); install it with: pip install 'edgernn[{extra}]'"
        ) from exc
