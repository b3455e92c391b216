"""What only the scripts need: train, evaluate, predict, export, the sweep report, the console and the config
resolvers and options. ``train.py``, ``evaluate.py``, ``predict.py`` and ``export.py`` call one function here."""
