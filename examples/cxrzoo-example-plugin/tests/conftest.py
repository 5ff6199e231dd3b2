import sys
from pathlib import Path

# Lets the tests run from a plain checkout, before the plugin is pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
