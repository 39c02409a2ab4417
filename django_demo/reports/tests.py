"""Tests of the view that sends the report task (chapter 05). In the folder of
manage.py: ``DEBUG=true python manage.py test reports``.

Django's TestCase wraps every test in a transaction that is never committed,
so on_commit callbacks (apply_async_on_commit in the view) never run by
themselves: captureOnCommitCallbacks(execute=True) runs them when the block
ends. apply_async is replaced by a mock: the test records the call, no
message is sent (the task itself is tested against a real worker).
(A `with` over several lines in parentheses needs Python 3.10 or later.)"""

from unittest import mock

from django.contrib.auth import get_user_model
from django.test import TestCase

from .models import Report
from .tasks import generate_report


class CreateReportTests(TestCase):
    def setUp(self):
        self.user = get_user_model().objects.create_user("alice")

    def test_the_task_is_sent_after_commit_with_the_reports_id(self):
        self.client.force_login(self.user)   # create_report is @login_required
        with (mock.patch.object(generate_report, "apply_async") as send,   # records the call, sends nothing
              self.captureOnCommitCallbacks(execute=True) as callbacks):
            response = self.client.post("/", {"title": "test report", "rows": 2})
        self.assertEqual(len(callbacks), 1)   # one task, sent once the row is committed
        report = Report.objects.get()
        self.assertRedirects(response, f"/reports/{report.pk}/")
        send.assert_called_once_with((str(report.pk),), task_id=report.task_id)   # the id, not the object

    def test_without_a_login_the_view_does_not_run(self):
        with (mock.patch.object(generate_report, "apply_async") as send,   # records the call, sends nothing
              self.captureOnCommitCallbacks(execute=True) as callbacks):
            response = self.client.post("/", {"title": "test report", "rows": 2})
        self.assertRedirects(response, "/accounts/login/?next=/")   # 302 to the login page
        self.assertEqual(len(callbacks), 0)
        send.assert_not_called()
        self.assertFalse(Report.objects.exists())
