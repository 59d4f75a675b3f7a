// A rolling time-series chart (uPlot) fed one point per live snapshot.
import uPlot from "./uplot.esm.js";

const KEEP = 180; // points (three minutes at the default one-second tick)
const COLORS = ["#1a7f37", "#c22", "#9a6700", "#8250df", "#0b62c4", "#bf3989", "#57606a",
  "#1b7c83", "#953800", "#6639ba"];

export class RollingChart {
  constructor(host, title, names, { width = 560, height = 200 } = {}) {
    this.names = names;
    this.data = [[], ...names.map(() => [])];
    this.plot = new uPlot({
      title, width, height,
      scales: { x: { time: true } },
      series: [{}, ...names.map((name, i) => ({ label: name, stroke: COLORS[i % COLORS.length],
        width: 1.5 }))],
      axes: [{}, { size: 60 }],
    }, this.data, host);
  }

  push(atMs, values) {
    this.data[0].push(atMs / 1000);
    this.names.forEach((name, i) => this.data[i + 1].push(values[name] ?? null));
    if (this.data[0].length > KEEP) this.data.forEach((series) => series.shift());
    this.plot.setData(this.data);
  }
}
