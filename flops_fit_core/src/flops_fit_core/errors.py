"""The exception tree, written out in one place.

    FlopsFitError                  exit 1: every error flops-fit raises on purpose
    ├── UsageError                 exit 2: the request itself is wrong
    │   ├── ConfigError            a config file, key, value or --set override is invalid, or
    │   │                          the plugins of a study disagree (`validate_study`)
    │   ├── UnknownPluginError     a plugin name that nothing registered
    │   ├── InputError             a missing, unreadable or malformed input file or data set
    │   │   └── NothingToDraw      a plotter has nothing to show for this outcome (no curves,
    │   │                          no parametric fit); `run` and the report skip it and say why
    │   ├── OutputError            a file cannot be written (permission, read-only, full disk,
    │   │                          a directory in the way), or would overwrite an input
    │   └── StudyLocked            another flops-fit process is writing this run directory
    ├── PluginError                exit 2: a plugin is broken (two classes with one name, a bad
    │                              class)
    ├── FitError                   exit 1: the data cannot support the requested fit (too few
    │                              budgets, strict R² not met)
    ├── TrainingError              exit 1: a run failed; trainers raise it, executors record it
    ├── ClusterError               exit 1: a cluster cannot run the sweep (its workers run
    │                              other versions, the scheduler refused the jobs)
    ├── TrainingCancelled          exit 130: the user or the executor cancelled a run; not a
    │                              failure, so nothing is recorded and the next run trains it
    └── RunFailed                  exit 1: a stage finished but left failed experiments

The CLI turns each into one line on stderr and the exit code its class names (`exit_code`), so
a user never sees a traceback for a mistake of theirs. A message is one line whatever it quotes:
a line break inside it (a column name, a path or a value a user gave) is shown escaped (`\\n`).
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "ConfigError",
    "FitError",
    "FlopsFitError",
    "InputError",
    "NothingToDraw",
    "OutputError",
    "PluginError",
    "RunFailed",
    "StudyLocked",
    "TrainingCancelled",
    "TrainingError",
    "UnknownPluginError",
    "UsageError",
]


#: What `str.splitlines` breaks a line at: shown escaped in a message, which is one line.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_ESCAPED = str.maketrans({c: c.encode("unicode_escape").decode() for c in _LINE_BREAKS})


def one_line(message: str) -> str:
    """`message` with its line breaks escaped: what the CLI prints after `Error: `."""
    return message.translate(_ESCAPED)


class FlopsFitError(Exception):
    """Base of every error flops-fit raises on purpose."""

    exit_code = 1

    def __str__(self) -> str:
        # One line, as the CLI prints it after `Error: `, even when the message quotes text
        # a user gave that holds a line break (a CSV header cell, a --set value, a path).
        return one_line(super().__str__())


class UsageError(FlopsFitError):
    """The request is wrong: bad config, unknown name, bad input file."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file, key, value or override is invalid."""


class UnknownPluginError(UsageError):
    """A plugin name that no installed plugin registered."""

    def __init__(self, kind: str, name: str, available: list[str]):
        self.kind, self.name, self.available = kind, name, sorted(available)
        choices = ", ".join(self.available) or "none installed"
        super().__init__(f"Unknown {kind} {name!r}. Available: {choices}")


class InputError(UsageError):
    """A missing, unreadable or malformed input file or data set."""


class NothingToDraw(InputError):
    """A plotter cannot draw this outcome: it lacks what the figure shows (curves, a
    parametric law). Asked for by name, that is a usage error; as part of a study's figures,
    the pipeline and the report skip the figure and say why."""


class OutputError(UsageError):
    """A file or directory cannot be written (permission, read-only, full disk, a directory
    where a file should go), or writing it would overwrite one of the command's inputs."""


class StudyLocked(UsageError):
    """Another flops-fit process holds this run directory's writer lock."""


class PluginError(FlopsFitError):
    """A plugin is broken: a duplicate name, a class without `name` or `Config`."""

    exit_code = 2


class FitError(FlopsFitError):
    """The data cannot support the requested fit (too few budgets, strict R² not met, ...)."""


class TrainingError(FlopsFitError):
    """A training run failed; executors turn it into a `failed` RunResult."""


class ClusterError(FlopsFitError):
    """A cluster cannot run the sweep: its workers run other versions of flops-fit or the
    trainer than the driver, or its scheduler refused or lost the jobs."""


class TrainingCancelled(FlopsFitError):
    """A run was cancelled; it is not recorded, so the next invocation trains it again."""

    exit_code = 130


class RunFailed(FlopsFitError):
    """A stage completed but some experiments failed (their records say why)."""
