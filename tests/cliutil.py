"""Run the ``evhw`` command in-process and capture its exit code, stdout and stderr."""
from evhw.cli import main


def run(capsys, *args):
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = e.code or 0
    cap = capsys.readouterr()
    return code, cap.out, cap.err
