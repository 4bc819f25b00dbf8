"""Environment setup (``setup.sh``), the patched wheel builds (``build_wheel.py``) and the final check."""
