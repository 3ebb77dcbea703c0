"""The opening of a script that must run in a Python without peftstudy (`python -I -c`): the package is installed
editable (a .pth puts src/ on sys.path), so every sys.path entry holding it is dropped, and the script checks."""

WITHOUT_PEFTSTUDY = r"""
import json, os, sys
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or os.getcwd(), "peftstudy"))]
try:
    import peftstudy
except ImportError:
    pass
else:
    raise SystemExit("peftstudy is importable: " + peftstudy.__file__)
"""
