"""Run ``simonsca`` in this process and read what it printed: one helper for every CLI test."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from simonsca.cli import main


@dataclass
class Run:
    """Exit status, stdout and stderr of one ``simonsca`` command."""

    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def error_line(self, *needles: str) -> str:
        """The one error line (status 2, nothing else that reads as an error, no traceback)."""
        assert self.rc == 2, (self.rc, self.out, self.err)
        assert "Traceback" not in self.out + self.err
        errors = [line for line in self.err_lines if "error" in line.lower()]
        assert len(errors) == 1, self.err
        for needle in needles:
            assert needle in errors[0], (needle, errors[0])
        return errors[0]

    def only_line(self, *needles: str) -> str:
        """:meth:`error_line`, and nothing else printed at all (no status notes either)."""
        line = self.error_line(*needles)
        assert self.err_lines == [line] and self.out == "", (self.out, self.err)
        return line

    def clean(self) -> None:
        """A result (exit 0 or 1), and on stderr only simonsca's one-line status notes."""
        assert self.rc in (0, 1), (self.rc, self.err)
        assert "Traceback" not in self.out + self.err
        for line in self.err_lines:
            assert line.startswith("simonsca: ") and "error" not in line, self.err

    @property
    def model_work_started(self) -> bool:
        return "loading" in self.err


def cli(capfd: pytest.CaptureFixture[str], *args: object) -> Run:
    """``simonsca ARGS`` through :func:`simonsca.cli.main` (argparse's exits caught)."""
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse's usage errors
        rc = int(exit_.code or 0)
    out, err = capfd.readouterr()
    return Run(rc, out, err)
