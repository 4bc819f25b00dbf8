"""What SAU costs: the op (``activation.py``) and one training step of each task (``detection.py``,
``segmentation.py``, ``translation.py``, sharing ``common.py``)."""
