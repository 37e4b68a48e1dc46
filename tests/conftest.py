import os
import sys

# Run from any folder: the package is imported from the checkout, not from site-packages.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only
