"""The ER/IP/EX empathy models: native bi-encoders, checkpoint loaders, scoring, training and evaluation."""

import logging

log = logging.getLogger(__name__)
