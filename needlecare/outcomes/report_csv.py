"""One clinic's outcome report as tidy CSV for analysts: a header of the figure-row columns, then one row per figure."""

import csv
import io

from needlecare.outcomes.report_rows import CSV_COLUMNS, figure_rows
from needlecare.outcomes.reports import ReportData


def render_csv(data: ReportData) -> str:
    """Tidy CSV: a header of :data:`CSV_COLUMNS`, then one row per figure. Suppressed values are empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in figure_rows(data):
        writer.writerow(row.csv_record())
    return buffer.getvalue()
