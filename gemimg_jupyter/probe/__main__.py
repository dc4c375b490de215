"""``python -m gemimg_jupyter.probe``."""

from gemimg_jupyter.probe import main

raise SystemExit(main())
