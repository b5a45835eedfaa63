"""Staff page: the clinic's messages that could not be delivered (patient messages and alerts), newest first.

Behind the practitioner login and scoped to the user's clinic, like the case pages.
"""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from models import Clinic
from needlecare.core import clock
from needlecare.followup.undelivered import list_undelivered
from needlecare.web.auth import CurrentUser
from needlecare.web.cases import NO_STORE
from needlecare.web.deps import DbDep
from needlecare.web.templating import templates

router = APIRouter(tags=["staff"], include_in_schema=False)


@router.get("/undelivered", response_class=HTMLResponse)
def undelivered_page(request: Request, user: CurrentUser, db: DbDep) -> Response:
    clinic = db.get(Clinic, user.clinic_id)
    tz = clinic.timezone if clinic is not None else "UTC"
    context = {
        "request": request,
        "user": user,
        "tz": tz,
        "local": lambda moment: clock.local(moment, tz).strftime("%a %d %b %H:%M"),
        "rows": list_undelivered(db, user.clinic_id),
    }
    return templates.TemplateResponse(request, "undelivered.html.j2", context, headers=NO_STORE)
