"""actedit — activation-guided model editing against backdoors (Hsieh et al.), as a library.

The public API::

    import actedit
    edited = actedit.edit_model(victim, images, trigger=trigger)          # BDK (Eq. 1-5)
    edited = actedit.edit_model(victim, images)                           # ¬BDK
    fixed = actedit.repair(edited, images, labels, trigger=trigger)       # §3.1 repair
    actedit.evaluate(fixed, test_x, test_y, trigger=trigger, target=2)    # {"asr", "acc", "ctca", ...}
"""
__version__ = "0.1.0"
