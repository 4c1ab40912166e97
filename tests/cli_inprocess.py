"""Run `snncompile ...` in the test process (no new interpreter importing torch and Lava
again): the same `main` that `python -m snncompile.cli` calls, with its stdout and stderr
captured. Tests about the process boundary itself (the real `python -m` entry point, exit
status from the interpreter) keep their subprocess."""
import contextlib
import io


def run_cli(*args):
    """(exit status, stdout, stderr) of `snncompile *args`, like subprocess.run would give."""
    from snncompile.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:   # argparse's --help and usage errors
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return rc, out.getvalue(), err.getvalue()
