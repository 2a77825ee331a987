import json
from pathlib import Path

import pytest


@pytest.fixture
def cases():
    return json.loads((Path(__file__).parent / "data" / "cases.json").read_text())
