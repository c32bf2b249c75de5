/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
 * text exposition format (version 0.0.4). Enough for the provisioner's fixed set of metrics;
 * written here rather than pulled in because it is small and must run on three runtimes.
 */

export type Labels = Record<string, string>;

interface Metric {
  readonly name: string;
  render(): string;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function labelString(
  names: readonly string[],
  values: readonly string[],
  extra?: [string, string],
) {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i] ?? "")}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

/**
 * A sample value or `le` bound as Go's client writes it (`strconv.FormatFloat(v, 'g', -1, 64)`):
 * the shortest digits, in exponent form when the exponent is below -4 or at least 6, with at
 * least two exponent digits (`1e-08`, `4.4421888e+07`), so bucket labels match upstream's.
 */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  if (v === 0) return Object.is(v, -0) ? "-0" : "0";
  const [mantissa, expText] = v.toExponential().split("e") as [string, string];
  const exp = Number(expText);
  if (exp < -4 || exp >= 6) {
    const digits = String(Math.abs(exp)).padStart(2, "0");
    return `${mantissa}e${exp < 0 ? "-" : "+"}${digits}`;
  }
  return String(v);
}

abstract class Family<S> implements Metric {
  readonly name: string;
  readonly help: string;
  #labelNames: readonly string[];
  protected readonly series = new Map<string, { values: string[]; state: S }>();
  protected abstract readonly type: string;

  constructor(name: string, help: string, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.#labelNames = labelNames;
  }

  get labelNames(): readonly string[] {
    return this.#labelNames;
  }

  /**
   * Adds the label `name` (last) to the family; the series so far get `value`. For a label that
   * is known only once the process runs, such as csi-lib-utils' `migrated`.
   */
  addLabel(name: string, value: string): void {
    if (this.#labelNames.includes(name)) return;
    this.#labelNames = [...this.#labelNames, name];
    const existing = [...this.series.values()];
    this.series.clear();
    for (const s of existing) {
      const values = [...s.values, value];
      this.series.set(values.join("\u0000"), { values, state: s.state });
    }
  }

  protected abstract init(): S;

  protected get(labels: Labels = {}): S {
    // The key is built without an intermediate array: this runs for every observation.
    const names = this.labelNames;
    let key = "";
    for (let i = 0; i < names.length; i++) {
      if (i > 0) key += "\u0000";
      key += labels[names[i]!] ?? "";
    }
    let s = this.series.get(key);
    if (!s) {
      const values = names.map((n) => labels[n] ?? "");
      s = { values, state: this.init() };
      this.series.set(key, s);
    }
    return s.state;
  }

  protected abstract renderSeries(values: string[], state: S): string[];

  /** Creates the series for `labels` if missing, so that it is rendered (at zero) from now on. */
  touch(labels: Labels = {}): void {
    this.get(labels);
  }

  render(): string {
    const lines = [
      `# HELP ${this.name} ${escapeHelp(this.help)}`,
      `# TYPE ${this.name} ${this.type}`,
    ];
    const sorted = [...this.series.values()].sort((a, b) =>
      a.values.join("\u0000").localeCompare(b.values.join("\u0000")),
    );
    for (const s of sorted) lines.push(...this.renderSeries(s.values, s.state));
    return lines.join("\n");
  }
}

export class Counter extends Family<{ v: number }> {
  protected readonly type = "counter";
  protected init() {
    return { v: 0 };
  }
  inc(labels?: Labels, by = 1): void {
    this.get(labels).v += by;
  }
  value(labels?: Labels): number {
    return this.get(labels).v;
  }
  protected renderSeries(values: string[], s: { v: number }) {
    return [`${this.name}${labelString(this.labelNames, values)} ${formatValue(s.v)}`];
  }
}

export class Gauge extends Family<{ v: number }> {
  protected readonly type = "gauge";
  protected init() {
    return { v: 0 };
  }
  set(labels: Labels | undefined, v: number): void {
    this.get(labels).v = v;
  }
  inc(labels?: Labels, by = 1): void {
    this.get(labels).v += by;
  }
  value(labels?: Labels): number {
    return this.get(labels).v;
  }
  protected renderSeries(values: string[], s: { v: number }) {
    return [`${this.name}${labelString(this.labelNames, values)} ${formatValue(s.v)}`];
  }
}

interface HistState {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Family<HistState> {
  protected readonly type = "histogram";
  readonly buckets: readonly number[];
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
  ) {
    super(name, help, labelNames);
    this.buckets = [...buckets].sort((a, b) => a - b);
  }
  protected init(): HistState {
    return { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
  }
  observe(labels: Labels | undefined, v: number): void {
    const s = this.get(labels);
    s.sum += v;
    s.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) s.counts[i]!++;
  }
  count(labels?: Labels): number {
    return this.get(labels).count;
  }
  protected renderSeries(values: string[], s: HistState) {
    const out = this.buckets.map(
      (b, i) =>
        `${this.name}_bucket${labelString(this.labelNames, values, ["le", formatValue(b)])} ${s.counts[i]}`,
    );
    out.push(
      `${this.name}_bucket${labelString(this.labelNames, values, ["le", "+Inf"])} ${s.count}`,
    );
    out.push(`${this.name}_sum${labelString(this.labelNames, values)} ${formatValue(s.sum)}`);
    out.push(`${this.name}_count${labelString(this.labelNames, values)} ${s.count}`);
    return out;
  }
}

/** A set of metrics rendered together. Collectors run just before rendering (process stats). */
export class Registry {
  readonly #metrics = new Map<string, Metric>();
  readonly #collectors: (() => void)[] = [];
  readonly #rendered: (() => void)[] = [];

  register<M extends Metric>(m: M): M {
    if (this.#metrics.has(m.name)) throw new Error(`Metric ${m.name} is registered twice`);
    this.#metrics.set(m.name, m);
    return m;
  }

  counter(name: string, help: string, labels: readonly string[] = []): Counter {
    return this.register(new Counter(name, help, labels));
  }

  gauge(name: string, help: string, labels: readonly string[] = []): Gauge {
    return this.register(new Gauge(name, help, labels));
  }

  histogram(
    name: string,
    help: string,
    labels: readonly string[],
    buckets: readonly number[],
  ): Histogram {
    return this.register(new Histogram(name, help, labels, buckets));
  }

  onCollect(fn: () => void): void {
    this.#collectors.push(fn);
  }

  /** Runs `fn` after each rendering (counting scrapes). */
  onRendered(fn: () => void): void {
    this.#rendered.push(fn);
  }

  /** The exposition text, metrics sorted by name. */
  render(): string {
    for (const c of this.#collectors) c();
    const text = `${[...this.#metrics.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((m) => m.render())
      .join("\n")}\n`;
    for (const r of this.#rendered) r();
    return text;
  }
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
