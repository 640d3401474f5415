"""The demo: a real model, its traffic, and the monitoring stack that watches it.

``inferwatch demo`` trains a classifier on a dataset that ships inside scikit-learn, serves
it instrumented with a reference profile, drives scripted traffic through a baseline, a
feature drift, an error burst, a latency regression and a recovery, and runs Prometheus and
Alertmanager with the generated rules, printing every page in the terminal.

Modules: :mod:`.scenario` (phases and the scaled rule config), :mod:`.model` (the model
service), :mod:`.traffic` (the traffic generator), :mod:`.receiver` (the webhook that prints
pages), :mod:`.stack` (starting and stopping the processes), :mod:`.cli` (the command).
"""
