//! The evaluation's SVG plots (plotters, SVG backend only): exits per operation by source and
//! configuration, and the time metrics as ratios to `bare` by configuration.

use std::path::Path;

use plotters::prelude::*;

use crate::bench_report::{Kind, Row};

type Plot = Result<(), String>;

const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// Stacked bars: one bar per (workload, configuration) in `bars`, each split by source.
pub fn exits_per_op(path: &Path, bars: &[(String, Vec<(&'static str, f64)>)]) -> Plot {
    let root = SVGBackend::new(path, (1000, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let top = bars
        .iter()
        .map(|(_, parts)| parts.iter().map(|(_, v)| v).sum::<f64>())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;
    let n = bars.len() as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption("exits per operation by source (median)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top)
        .map_err(err)?;
    let labels: Vec<String> = bars.iter().map(|(l, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc("exits per operation")
        .draw()
        .map_err(err)?;
    let sources: Vec<&'static str> = bars
        .first()
        .map(|(_, p)| p.iter().map(|(s, _)| *s).collect())
        .unwrap_or_default();
    for (k, source) in sources.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let rects = bars.iter().enumerate().map(move |(i, (_, parts))| {
            let below: f64 = parts[..k].iter().map(|(_, v)| v).sum();
            let i = i as u32;
            Rectangle::new(
                [
                    (SegmentValue::Exact(i), below),
                    (SegmentValue::Exact(i + 1), below + parts[k].1),
                ],
                color.filled(),
            )
        });
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(*source)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Grouped bars: per time metric, one bar per configuration with its ratio to `bare`.
pub fn latency_ratio(path: &Path, names: &[&str], rows: &[Row]) -> Plot {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.kind == Kind::Timed).collect();
    let root = SVGBackend::new(path, (1000, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let top = rows
        .iter()
        .flat_map(|r| r.cells.iter().flatten().filter_map(|c| c.ratio))
        .fold(1.0, f64::max)
        * 1.15;
    let groups = rows.len() as u32;
    let per = names.len() as u32 + 1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "time ratio to bare by configuration (median)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d((0..groups * per).into_segmented(), 0.0..top)
        .map_err(err)?;
    // Short labels under each group: "timer p50", "cpu run time".
    let labels: Vec<String> = rows
        .iter()
        .map(|r| match r.metric.rsplit_once(' ') {
            Some((_, p)) if p.starts_with('p') => format!("{} {p}", r.workload),
            _ => format!("{} {}", r.workload, r.metric),
        })
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels((groups * per) as usize)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if i % per == per / 2 => {
                labels.get((i / per) as usize).cloned().unwrap_or_default()
            }
            _ => String::new(),
        })
        .y_desc("ratio to bare")
        .draw()
        .map_err(err)?;
    for (k, name) in names.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let k = k as u32;
        let rects = rows.iter().enumerate().filter_map(move |(g, r)| {
            let ratio = r.cells.get(k as usize).copied().flatten()?.ratio?;
            let x = g as u32 * per + k;
            Some(Rectangle::new(
                [
                    (SegmentValue::Exact(x), 0.0),
                    (SegmentValue::Exact(x + 1), ratio),
                ],
                color.filled(),
            ))
        });
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_report::Cell;

    #[test]
    fn both_plots_write_svg() {
        let dir = ::tests::target_dir().join("xtask-test-plots");
        std::fs::create_dir_all(&dir).unwrap();
        let bars = vec![
            (
                "timer emulated".to_string(),
                vec![("eoi", 1.0), ("timer", 1.0)],
            ),
            (
                "timer direct".to_string(),
                vec![("eoi", 0.0), ("timer", 0.0)],
            ),
        ];
        let p = dir.join("exits.svg");
        exits_per_op(&p, &bars).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("timer emulated"));
        let cell = |m: f64, r: f64| {
            Some(Cell {
                median: m,
                min: m,
                max: m,
                ratio: Some(r),
            })
        };
        let rows = vec![Row {
            workload: "cpu",
            metric: "run time",
            unit: "s",
            kind: Kind::Timed,
            cells: vec![cell(1.0, 1.0), cell(1.1, 1.1)],
        }];
        let p = dir.join("latency.svg");
        latency_ratio(&p, &["bare", "direct"], &rows).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.contains("cpu run time") && svg.contains("direct"));
        let p99 = Row {
            metric: "round trip p99",
            workload: "ipi",
            ..rows[0].clone()
        };
        latency_ratio(&p, &["bare", "direct"], &[p99]).unwrap();
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .contains(">\nipi p99\n<"));
    }
}
