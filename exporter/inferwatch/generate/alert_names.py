"""The names of the generated alerts, in rule-file order.

The config checks per-alert overrides against these names and the alert catalogue
(`rules_alerts.py`) builds one alert per name; both import them from here, so neither
imports the other to learn them.

>>> ALERT_NAMES[0], "InferwatchGpuLost" in ALERT_NAMES
('InferwatchTargetDown', True)
"""

from __future__ import annotations

ALERT_NAMES: tuple[str, ...] = (
    # availability
    "InferwatchTargetDown",
    "InferwatchExporterDown",
    "InferwatchTargetMissing",
    "InferwatchPushgatewayGroupStale",
    "InferwatchBatchRunFailed",
    "InferwatchNoTraffic",
    "InferwatchErrorBudgetBurnFast",
    "InferwatchErrorBudgetBurnSlow",
    "InferwatchLatencyHigh",
    "InferwatchStreamFirstItemSlow",
    # predictions and model identity
    "InferwatchInvalidPredictions",
    "InferwatchModelStale",
    "InferwatchTooManyVersionsServing",
    # data quality and drift
    "InferwatchMissingValuesSpike",
    "InferwatchOutOfRangeSpike",
    "InferwatchInputSchemaErrors",
    "InferwatchFeatureDrift",
    "InferwatchPredictionDrift",
    "InferwatchAccuracyDrop",
    "InferwatchRegressionErrorRise",
    # shadow models
    "InferwatchShadowFailing",
    "InferwatchShadowAgreementLow",
    "InferwatchShadowDropping",
    "InferwatchShadowBetter",
    # resources and inferwatch itself
    "InferwatchGpuMemoryNearFull",
    "InferwatchGpuTemperatureHigh",
    "InferwatchGpuLost",
    "InferwatchGpuReadErrors",
    "InferwatchGpuXidErrors",
    "InferwatchCollectorFailing",
    "InferwatchInternalErrors",
    "InferwatchSeriesOverflow",
    # adaptive baselines
    "InferwatchTrafficAnomaly",
    "InferwatchErrorRatioAnomaly",
    "InferwatchLatencyAnomaly",
    "InferwatchBatchSizeAnomaly",
    "InferwatchPredictionShift",
    "InferwatchClassMixShift",
    "InferwatchConfidenceDrop",
    "InferwatchMissingRateAnomaly",
    "InferwatchOutOfRangeAnomaly",
)

# Alerts whose series carry a model, so a `models:` entry may change their severity and `for`:
# every alert of the rules table that is judged per model (its dashboard link names the model).
MODEL_ALERT_NAMES: frozenset[str] = frozenset({
    "InferwatchBatchRunFailed", "InferwatchNoTraffic", "InferwatchErrorBudgetBurnFast",
    "InferwatchErrorBudgetBurnSlow",
    "InferwatchLatencyHigh", "InferwatchStreamFirstItemSlow", "InferwatchInvalidPredictions",
    "InferwatchModelStale", "InferwatchTooManyVersionsServing", "InferwatchMissingValuesSpike",
    "InferwatchOutOfRangeSpike", "InferwatchInputSchemaErrors", "InferwatchFeatureDrift",
    "InferwatchPredictionDrift", "InferwatchAccuracyDrop", "InferwatchRegressionErrorRise",
    "InferwatchShadowFailing",
    "InferwatchShadowAgreementLow", "InferwatchShadowDropping", "InferwatchShadowBetter",
    "InferwatchTrafficAnomaly", "InferwatchErrorRatioAnomaly", "InferwatchLatencyAnomaly",
    "InferwatchBatchSizeAnomaly", "InferwatchPredictionShift", "InferwatchClassMixShift",
    "InferwatchConfidenceDrop", "InferwatchMissingRateAnomaly", "InferwatchOutOfRangeAnomaly",
})
