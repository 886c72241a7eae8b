import sys

from core.training.train import main

sys.exit(main())
