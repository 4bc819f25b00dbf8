"""What the tests of the tools' one-line errors share (test_bad_input.py, test_checkpoint_safety.py): running an
entry point in this process as its ``__main__`` does, the one ``error:`` line it must end with, and MMEngine's
global instances dropped after each test."""
import pytest

from tools.zoo.errors import run_main


def _managed_classes(cls=None):
    """MMEngine's ManagerMixin classes (MMLogger, Visualizer, MessageHub, DefaultScope, ...): each keeps its
    global instances by name in its own ``_instance_dict``."""
    from mmengine.utils import ManagerMixin
    cls = cls or ManagerMixin
    found = [cls] if '_instance_dict' in vars(cls) else []
    for sub in cls.__subclasses__():
        found += _managed_classes(sub)
    return found


@pytest.fixture(autouse=True)
def mmengine_globals_restored():
    """A Runner made in this process leaves MMEngine's global instances behind: the logger writes to this
    test's captured (then closed) stdout, and the next Runner of a config with a fixed visualizer name
    reuses this one's visualizer and so writes its scalars into this test's work dir (test_detection reads
    them from its own). Drop the instances a test made, so later tests and files see the process as before."""
    before = {cls: set(cls._instance_dict) for cls in _managed_classes()}
    yield
    for cls in _managed_classes():
        for name in [n for n in cls._instance_dict if n not in before.get(cls, ())]:
            instance = cls._instance_dict.pop(name)
            for handler in list(getattr(instance, 'handlers', [])):  # a logger's file and stream handlers
                instance.removeHandler(handler)
                handler.close()


def one_error_line(rc, err):
    """Exit status 1, no traceback, exactly one ``error:`` line; returns that line."""
    assert 'Traceback' not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert rc == 1 and len(errors) == 1, (rc, err[-3000:])
    return errors[0]


def cli(tool, argv, capsys):
    """``tools/<tool>.py argv`` in this process, as its ``__main__`` runs it; returns the error line."""
    capsys.readouterr()
    rc = run_main(tool.main, [str(a) for a in argv])
    return one_error_line(rc, capsys.readouterr().err)
