import sys
from pathlib import Path

# tests/fakes.py holds small detectors shared by several test modules
sys.path.insert(0, str(Path(__file__).parent))
