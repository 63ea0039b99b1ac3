"""``python -m streamtag.train.corpus --out DIR --size small``: build the corpus."""

import sys

from streamtag.train.corpus.build import main

sys.exit(main())
