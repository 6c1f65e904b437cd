"""Helpers shared by the test modules: a test module imports from here, never from another test module.

- `data`: rows of the bundled sample and small competition-format data folders;
- `prompts`: the prompt budget rule as one assertion, and the random dialogues the property tests draw;
- `real_models`: the real preset folders, unpacked from `../shared/models.tar.xz`;
- `fake_track`: a fast fake training track for the tuner, and its search-space and data files;
- `postgres`: a throwaway PostgreSQL server for the shared-study test.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"
REAL_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data" / "competition"
