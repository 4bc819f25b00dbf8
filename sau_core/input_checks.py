"""Bad input the user can fix (data on disk, checkpoints): one exception type and cheap file checks.

The zoo's dataset classes and transforms (``segmentation.sau_seg``) and the translation runner raise
:class:`InputError`; ``tools/train.py`` and ``tools/eval.py`` report it as one ``error: ...`` line, exit 1.
It subclasses ``ValueError``, so code that catches ``ValueError`` keeps working.
"""
import os

#: (start, end marker) of the image formats the zoo reads; the end marker must lie in the file's last bytes
_SIGNATURES = {
    '.jpg': (b'\xff\xd8\xff', b'\xff\xd9'),
    '.jpeg': (b'\xff\xd8\xff', b'\xff\xd9'),
    '.png': (b'\x89PNG\r\n\x1a\n', b'IEND'),
}
_TAIL = 4096  # JPEGs may carry a few padding bytes after their end-of-image marker


class InputError(ValueError):
    """Data or a file given by the user is not what the zoo expects; the message names the file."""


def image_file_problem(path):
    """Why the JPEG/PNG file ``path`` cannot decode completely (missing, empty, not that format, truncated),
    or None when it looks whole. Reads the first and last few bytes only, so it is cheap enough to run on
    every file of a dataset before training; other suffixes are not checked."""
    signature = _SIGNATURES.get(os.path.splitext(path)[1].lower())
    if signature is None:
        return None
    start, end = signature
    try:
        with open(path, 'rb') as f:
            head = f.read(len(start))
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except OSError as e:
        return f'cannot be read ({e.strerror or e})'
    kind = 'PNG' if start.startswith(b'\x89PNG') else 'JPEG'
    if size == 0:
        return 'is empty'
    if head != start:
        return f'is not a {kind} file (it starts with {head[:4]!r})'
    if end not in tail:
        return f'is a truncated {kind} file (no end marker; {size} bytes)'
    return None


def read_checkpoint(path):
    """The loaded checkpoint (a zoo or framework checkpoint: trusted, ``weights_only=False``), or
    ``InputError`` naming ``path`` when torch cannot load it (truncated after a crash, not a checkpoint)."""
    import torch
    try:
        return torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:  # torch.load's many ways to fail on a truncated or foreign file
        raise InputError(f'cannot read checkpoint {path}: {type(e).__name__}: {e}') from e
