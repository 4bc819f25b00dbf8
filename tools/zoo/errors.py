"""The one error type for bad input the user can fix, and the one main wrapper that reports it.

Every entry point ends in ``sys.exit(run_main(main))``: bad input becomes one ``error: ...`` line on stderr and
exit status 1; anything else keeps its traceback (a bug to fix, not an input). :func:`check_version` is the
guard beside every patch of another library's private code; :func:`quieted` keeps a tool's output to its
results without changing the caller's logging or warnings.
"""
import contextlib
import logging
import sys
import warnings

_MMCV_DECODE = 'failed to load image: '  # MMCV's LoadImageFromFile: the decoder returned None


class InputError(ValueError):
    """Data, a file, a flag or a config that the user can fix; the message names it and says what to do.

    A ``ValueError``, so that code catching those keeps working. ``details`` (the end of a failed tool's log,
    say) is printed as it is below the error line; ``path`` names the file the problem was found in, for a
    caller that adds where that file was needed (``tools.zoo.data_checks.dataset_errors``).
    """

    def __init__(self, message, details=None, path=None):
        super().__init__(message)
        self.details = details
        self.path = path


@contextlib.contextmanager
def quieted(levels, ignored_warnings=()):
    """Within the block, set each named logger to its level and ignore each warning (``filterwarnings``
    keyword arguments); afterwards put both back. A tool's ``main`` called in-process (a test, a notebook, a
    sweep) must not leave, say, fairseq's loggers at WARNING for the caller's next training run."""
    loggers = {logging.getLogger(name): logging.getLogger(name).level for name in levels}
    with warnings.catch_warnings():
        for filters in ignored_warnings:
            warnings.filterwarnings('ignore', **filters)
        for logger in loggers:
            logger.setLevel(levels[logger.name])
        try:
            yield
        finally:
            for logger, level in loggers.items():
                logger.setLevel(level)


def run_main(main, argv=None):
    """``main(argv)``; bad input ends in one ``error: ...`` line on stderr and returns exit status 1.

    Bad input: ``InputError``; ``FileExistsError`` (a run that would be overwritten); ``FloatingPointError``
    (``FiniteLossHook``: a loss that became NaN/inf); ``FileNotFoundError`` (a file the early checks could not
    foresee; the OS's own error gets a hint); MMCV's ``failed to load image`` assertion (an image that does
    not decode). Each may come re-raised from a DataLoader worker.
    """
    try:
        return main(argv)
    except (InputError, FloatingPointError, FileExistsError) as e:
        _report(one_line(e), getattr(e, 'details', None))
    except FileNotFoundError as e:
        if e.filename:  # the OS's own error: say where to look
            _report(f'{e.strerror}: {e.filename} (check the dataset and paths in the config)')
        else:  # raised with a message of its own
            _report(one_line(e))
    except AssertionError as e:
        message = one_line(e)
        if not message.startswith(_MMCV_DECODE):
            raise
        _report(f'image {message[len(_MMCV_DECODE):]} does not decode (a corrupt file?)')
    return 1


def _report(line, details=None):
    print(f'error: {line}', file=sys.stderr)
    if details:
        print(details.rstrip('\n'), file=sys.stderr)


def one_line(e):
    """The message of ``e`` on one line; for an error re-raised from a DataLoader worker (``Caught X in
    DataLoader worker process 0. Original Traceback ...``), the original error's own line."""
    text = str(e).strip()
    if 'Original Traceback' in text:
        last = text.splitlines()[-1]
        text = last.split(': ', 1)[1] if ': ' in last else last
    return ' '.join(line.strip() for line in text.splitlines())


def check_version(library, installed, written_for, patch, recheck):
    """``RuntimeError`` unless ``installed`` is the ``library`` version ``patch`` was written for.

    ``patch`` relies on private code of ``library`` (a method it overrides, a message it parses, an attribute
    it replaces), which any release may change without notice; the message says what to re-check before
    updating ``written_for``. A local version suffix (``0.12.2+sauzoo...``) is ignored. Not an ``InputError``:
    the environment, not the user's input, is wrong, so it keeps its traceback.
    """
    if str(installed).split('+')[0] != str(written_for):
        raise RuntimeError(f'{patch} was written for {library} {written_for}, but {library} {installed} is '
                           f'installed: re-check {recheck} in this version, then update the version there')
