"""
### export_top_leads: the example consumer of the scored-leads asset

Scheduled on `mlsys://scored_leads`: runs after every published night of `score_leads`
(scheduled, triggered or backfilled) and writes that night's 100 best leads to
`$MLSYS_DATA_DIR/exports/top_leads/score_date=<date>.csv` (`mlsys.exports`). The score date
comes from the event's `extra`, so it exports the night that was published, whatever the run's
own date; several publishes before it runs give one run exporting each of their nights.
The pattern for a BI-extract refresh: schedule on the asset, key on the event's `extra`.
"""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

from mlsys.airflow_support import PIPELINE_ARGS, SCORED_LEADS_URI

SCORED_LEADS = Asset(SCORED_LEADS_URI)


@dag(
    dag_id="export_top_leads",
    schedule=[SCORED_LEADS],
    catchup=False,
    # Runs only on events; active when created so the first publish is followed.
    is_paused_upon_creation=False,
    default_args=PIPELINE_ARGS,
    tags=["mlsys", "scoring", "export"],
    doc_md=__doc__,
)
def export_top_leads() -> None:
    @task
    def export(**context: object) -> list[dict]:
        from mlsys import exports
        from mlsys.airflow_support import fail_now, score_dates_of_events
        from mlsys.settings import Settings

        with fail_now():
            dates = score_dates_of_events(context["triggering_asset_events"][SCORED_LEADS])  # type: ignore[index]
        settings = Settings.from_env()
        return [exports.export_top_leads(d, settings) for d in dates]

    export()


export_top_leads()
