"""``python -m streamtag.train.corpus --out DIR --size small``: build the corpus."""

import sys

from streamtag.train.corpus.cli import main

sys.exit(main())
