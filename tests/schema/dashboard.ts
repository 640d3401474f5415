// The dashboard shape the tests validate against, built only from Grafana's published types
// (@grafana/schema, the version in package.json): the dashboard kind, plus each panel plugin's
// own options and field config types, joined on the panel's `type`.
//
// Grafana's dashboard type keeps a panel's `options`, `fieldConfig.defaults.custom` and
// `targets` as open records, because their shape belongs to the panel and data source
// plugins. Here each panel type the dashboards use gets its plugin's types, and every target
// is a Prometheus query, so a legacy or misspelt option fails validation instead of being
// ignored. A panel type not listed here fails too.

import type * as common from '@grafana/schema/dist/types/common/common.gen';
import type * as bargauge from '@grafana/schema/dist/types/raw/composable/bargauge/panelcfg/x/types.gen';
import type * as heatmap from '@grafana/schema/dist/types/raw/composable/heatmap/panelcfg/x/types.gen';
import type * as stat from '@grafana/schema/dist/types/raw/composable/stat/panelcfg/x/types.gen';
import type * as statetimeline from '@grafana/schema/dist/types/raw/composable/statetimeline/panelcfg/x/types.gen';
import type * as table from '@grafana/schema/dist/types/raw/composable/table/panelcfg/x/types.gen';
import type * as timeseries from '@grafana/schema/dist/types/raw/composable/timeseries/panelcfg/x/types.gen';
import type * as kind from '@grafana/schema/dist/types/raw/dashboard/x/types.gen';

// A Prometheus query as the Prometheus data source stores it. @grafana/prometheus (12.4.0)
// declares it as `Prometheus` in dataquery.d.ts plus `interval` in types.d.ts (PromQuery);
// that package pulls in Grafana's whole UI stack, so its stored fields are restated here.
export interface PrometheusQuery extends Omit<common.DataQuery, 'datasource'> {
  datasource?: kind.DataSourceRef;
  editorMode?: 'builder' | 'code';
  exemplar?: boolean;
  expr: string;
  format?: 'time_series' | 'table' | 'heatmap';
  instant?: boolean;
  interval?: string;
  intervalFactor?: number;
  legendFormat?: string;
  range?: boolean;
}

interface FieldConfigSourceOf<Custom> {
  defaults: Omit<kind.FieldConfig, 'custom'> & { custom?: Custom };
  overrides: kind.FieldConfigSource['overrides'];
}

// A panel of one plugin: the dashboard kind's panel with that plugin's options and custom
// field config, and Prometheus targets.
type PanelOf<Type extends string, Options, Custom> = Omit<
  kind.Panel,
  'type' | 'options' | 'fieldConfig' | 'targets'
> & {
  type: Type;
  options?: Options;
  fieldConfig?: FieldConfigSourceOf<Custom>;
  targets?: PrometheusQuery[];
};

// Stat and bar gauge declare no custom field config.
type NoCustom = Record<string, never>;

// Named after their plugin: every plugin calls its types Options and FieldConfig.
export type TimeSeriesOptions = Pick<timeseries.Options, keyof timeseries.Options>;
export type TimeSeriesFieldConfig = Pick<timeseries.FieldConfig, keyof timeseries.FieldConfig>;
export type StatOptions = Pick<stat.Options, keyof stat.Options>;
export type BarGaugeOptions = Pick<bargauge.Options, keyof bargauge.Options>;
export type TableOptions = Pick<table.Options, keyof table.Options>;
export type TableFieldConfig = Pick<table.FieldConfig, keyof table.FieldConfig>;
export type HeatmapOptions = Pick<heatmap.Options, keyof heatmap.Options>;
export type HeatmapFieldConfig = Pick<heatmap.FieldConfig, keyof heatmap.FieldConfig>;
export type StateTimelineOptions = Pick<statetimeline.Options, keyof statetimeline.Options>;
export type StateTimelineFieldConfig = Pick<statetimeline.FieldConfig, keyof statetimeline.FieldConfig>;

export type TimeSeriesPanel = PanelOf<'timeseries', TimeSeriesOptions, TimeSeriesFieldConfig>;
export type StatPanel = PanelOf<'stat', StatOptions, NoCustom>;
export type BarGaugePanel = PanelOf<'bargauge', BarGaugeOptions, NoCustom>;
export type TablePanel = PanelOf<'table', TableOptions, TableFieldConfig>;
export type HeatmapPanel = PanelOf<'heatmap', HeatmapOptions, HeatmapFieldConfig>;
export type StateTimelinePanel = PanelOf<
  'state-timeline',
  StateTimelineOptions,
  StateTimelineFieldConfig
>;

export type KnownPanel =
  | TimeSeriesPanel
  | StatPanel
  | BarGaugePanel
  | TablePanel
  | HeatmapPanel
  | StateTimelinePanel;

export type RowPanel = Omit<kind.RowPanel, 'panels'> & { panels: KnownPanel[] };

// The Prometheus data source reads these four options from the top level of its annotation
// (its AnnotationQueryEditor writes them there), and the query itself from `target`.
export type PrometheusAnnotation = Omit<kind.AnnotationQuery, 'target'> & {
  target: PrometheusQuery;
  tagKeys?: string;
  textFormat?: string;
  titleFormat?: string;
  useValueForTime?: boolean;
};

export type InferwatchDashboard = Omit<kind.Dashboard, 'panels' | 'annotations'> & {
  annotations?: { list?: Array<kind.AnnotationQuery | PrometheusAnnotation> };
  panels?: Array<KnownPanel | RowPanel>;
};
