"""Learning: the architecture builders (``models``), the trainer (``train``), the ImageNet weight check
(``weights``) and the accelerator probe (``machine``). Takes crops and a split; gives one model cell's
weights, predictions and training log.
"""
