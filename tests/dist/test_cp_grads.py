"""Context-parallel attention gradients against full attention, on 2 gloo ranks [issue 6]."""

import shutil
import subprocess
import sys
from pathlib import Path


def test_cp_attention_gradients_match_full_attention() -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    script = Path(__file__).with_name("cp_grad_check.py")
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert r.stdout.count("dk") == 2, r.stdout
