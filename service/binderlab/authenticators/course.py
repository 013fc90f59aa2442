"""What an LMS launch asks for: the course notebook it opens, and whether the person teaches.

Pure functions over the launch's parameters (LTI 1.3 claims or LTI 1.1 form fields), so the
authenticators in ``lti.py`` stay thin and the rules can be tested without a hub.

The course notebook comes from, in this order:

1. custom parameters ``repo`` (a binder spec without its ref: ``gh/owner/course``,
   ``gl/group/course``, ``git/<url-encoded clone URL>``), ``ref`` (branch, tag or commit;
   default ``HEAD``) and ``file`` (the path JupyterLab opens; optional);
2. a target link that is a binder launch link of this host's binder service:
   ``<service_url>v2/gh/owner/course/main?labpath=week1.ipynb``.
"""

from dataclasses import dataclass
from posixpath import normpath
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

# the custom parameter names an LMS sends (LTI 1.1 prefixes each with "custom_")
REPO, REF, FILE = "repo", "ref", "file"
DEFAULT_REF = "HEAD"

# A role is compared by its principal name: the LTI 1.3 vocabulary URI
# http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor, its sub-role
# .../membership/Instructor#TeachingAssistant, LTI 1.1's urn:lti:role:ims/lis/Instructor
# (or .../Instructor/Lecturer) and the short form "Instructor" all name "Instructor".
DEFAULT_INSTRUCTOR_ROLES = ("Instructor", "TeachingAssistant", "ContentDeveloper")


class BadLaunch(ValueError):
    """A launch that names no usable course notebook; the message says what to fix."""


@dataclass(frozen=True)
class CourseLink:
    repo: str  # '<provider>/<spec without ref>', as in a binder link
    ref: str
    file: str = ""

    def loading_page(self, service_url: str) -> str:
        """The binder service's loading page for this notebook (it launches the user's
        named server and opens ``file``)."""
        url = f"{service_url.rstrip('/')}/v2/{self.repo}/{quote(self.ref, safe='')}"
        return url + (f"?{urlencode({'labpath': self.file})}" if self.file else "")

    def launch_url(self, service_url: str) -> str:
        """Where the browser goes after the LMS login: the service's login route, which
        signs it in to the service through the hub's OAuth and goes on to the loading page
        (straight to the loading page, a launch with authentication='optional' would be
        anonymous: nothing there asks for the login)."""
        page = urlsplit(self.loading_page(service_url))
        base = urlsplit(service_url.rstrip("/") + "/")
        return f"{base.scheme}://{base.netloc}{base.path}login?" + urlencode(
            {"next": page.path + (f"?{page.query}" if page.query else "")})


def _clean_file(path: str) -> str:
    path = path.strip()
    if not path:
        return ""
    clean = normpath(path)
    if path.startswith("/") or clean == ".." or clean.startswith("../") or "\\" in path:
        raise BadLaunch(f"The file {path!r} is not a path inside the repository; write it "
                        "relative to the repository's top folder, e.g. week1/intro.ipynb.")
    return clean


def _clean_repo(repo: str) -> str:
    repo = repo.strip().strip("/")
    provider, _, spec = repo.partition("/")
    if not provider.isalnum() or not provider.islower() or not spec or any(
            c.isspace() or c in "?#\\" for c in spec) or ".." in spec.split("/"):
        raise BadLaunch(
            f"The course repository {repo!r} is not a binder spec; write the provider and "
            "repository without the ref, e.g. repo=gh/owner/course (and ref=main).")
    return repo


def from_custom(custom: dict) -> CourseLink | None:
    """The course named by custom parameters; None when there is no ``repo`` parameter."""
    repo = str(custom.get(REPO) or "").strip()
    if not repo:
        return None
    ref = str(custom.get(REF) or "").strip() or DEFAULT_REF
    if any(c.isspace() for c in ref):
        raise BadLaunch(f"The ref {ref!r} has white space in it; name a branch, tag or "
                        "commit.")
    return CourseLink(_clean_repo(repo), ref, _clean_file(str(custom.get(FILE) or "")))


def from_target_link(target: str, service_url: str) -> CourseLink | None:
    """The course named by a target link that is this binder service's launch link
    (``<service_url>v2/<provider>/<spec>/<ref>[?labpath=...]``); None for any other link
    (e.g. the hub's own address, which LMS tool settings often carry)."""
    if not target:
        return None
    base = urlsplit(service_url.rstrip("/") + "/")
    link = urlsplit(target)
    prefix = base.path + "v2/"
    if (link.scheme, link.netloc) != (base.scheme, base.netloc) or \
            not link.path.startswith(prefix):
        return None
    spec = link.path[len(prefix):]
    repo, _, ref = spec.rpartition("/")
    if not repo or not ref or "/" not in repo:
        raise BadLaunch(f"The target link {target!r} names no ref; it should look like "
                        f"{service_url.rstrip('/')}/v2/gh/owner/course/main.")
    query = parse_qs(link.query)
    file = (query.get("labpath") or [""])[0]
    return CourseLink(_clean_repo(repo), unquote(ref), _clean_file(file))


def course_link(custom: dict, target_links: list[str], service_url: str) -> CourseLink:
    """Custom parameters first, then the target links in order; BadLaunch if none names a
    course notebook."""
    link = from_custom(custom)
    for target in target_links:
        if link is None:
            link = from_target_link(target, service_url)
    if link is None:
        raise BadLaunch(
            "This LMS link names no course notebook. In the tool's settings in the LMS, "
            f"set the custom parameters {REPO}=<provider>/<repository> (e.g. "
            f"gh/owner/course), {REF}=<branch> and {FILE}=<notebook path>, or make the "
            f"link's target a binder launch link ({service_url.rstrip('/')}/v2/...).")
    return link


def role_name(role: str) -> str:
    """The principal role an LTI 1.3 URI, an LTI 1.1 URN or a short name stands for."""
    role = role.strip()
    if role.startswith("urn:lti:"):
        # urn:lti:role:ims/lis/Instructor[/SubRole]
        return role.split("ims/lis/", 1)[-1].split("/", 1)[0]
    if "#" in role:
        base, fragment = role.split("#", 1)
        if base.rsplit("/", 1)[-1] in ("membership", "person"):
            return fragment.split("#", 1)[0]  # .../membership#Instructor
        return base.rsplit("/", 1)[-1]  # .../membership/Instructor#TeachingAssistant
    return role.rsplit("/", 1)[-1]


def is_instructor(roles, instructor_roles) -> bool:
    """Whether any of ``roles`` (a list, or LTI 1.1's comma-separated string) is one of
    ``instructor_roles`` (principal names, compared case-insensitively)."""
    if isinstance(roles, str):
        roles = roles.split(",")
    wanted = {r.lower() for r in instructor_roles}
    return any(role_name(str(r)).lower() in wanted for r in roles or [] if str(r).strip())


def groups_after_launch(current: set[str], instructor: bool, group: str) -> list[str]:
    """The user's groups after a launch: the LMS decides membership of the instructor group
    only; groups given otherwise (the hub's admin, a course registry) are kept."""
    groups = set(current) - {group}
    if instructor:
        groups.add(group)
    return sorted(groups)

