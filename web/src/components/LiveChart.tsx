import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { fieldValue } from "../format";

/** A streaming time-series chart (uPlot, canvas) of one field against stage time. */
export function LiveChart({ t, y, field, title }: { t: number[]; y: number[]; field: string; title: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const { label, unit } = fieldValue(field, 0);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = Math.max(280, el.clientWidth);
    const u = new uPlot(
      {
        width,
        height: 240,
        scales: { x: { time: false } },
        axes: [
          { label: "plant time [s]", stroke: "#9aa7b8", grid: { stroke: "#23304a" }, ticks: { stroke: "#23304a" } },
          { label: unit ? `${label} [${unit}]` : label, stroke: "#9aa7b8", grid: { stroke: "#23304a" }, ticks: { stroke: "#23304a" }, size: 70 },
        ],
        series: [{ label: "t [s]" }, { label: `${label}${unit ? ` [${unit}]` : ""}`, stroke: "#38bdf8", width: 2, fill: "rgba(56,189,248,0.12)", points: { show: false } }],
        legend: { show: true },
      },
      [[], []],
      el,
    );
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(280, el.clientWidth), height: 240 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [field, label, unit]);

  useEffect(() => {
    plot.current?.setData([t, y.map((v) => (Number.isFinite(v) ? v : null))] as uPlot.AlignedData);
  }, [t, y, field]);

  return (
    <figure className="chart" aria-label={`${title}: ${label}`} data-points={t.length}>
      <div ref={box} className="chart-box" />
      <figcaption className="muted small">
        {t.length} point{t.length === 1 ? "" : "s"}
      </figcaption>
    </figure>
  );
}
