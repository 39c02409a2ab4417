from django import forms

from .models import Notification


class NotificationForm(forms.ModelForm):
    """One notification. The address is checked here, by Django's EmailField, before
    anything is saved or queued: a bad address never becomes a task that fails later."""

    class Meta:
        model = Notification
        fields = ["channel", "recipient", "subject", "body", "delivery"]
        widgets = {
            "body": forms.Textarea(attrs={"rows": 5}),
            "delivery": forms.RadioSelect,
        }
        help_texts = {
            "recipient": "邮件的收件地址（渠道是“邮件”时必填）。",
            "delivery": "只对钉钉群机器人有意义：发送超时后要不要重发。",
        }
        error_messages = {
            "recipient": {"invalid": "这不是一个有效的邮件地址，例如 someone@example.com。"},
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Not sent (the default radio button left alone, or a client that knows nothing
        # of it): at least once, the model's default.
        self.fields["delivery"].required = False

    def clean(self):
        cleaned = super().clean()
        channel = cleaned.get("channel")
        if channel == Notification.Channel.EMAIL:
            if not cleaned.get("recipient") and "recipient" not in self.errors:
                self.add_error("recipient", "发邮件需要收件地址。")
        elif channel:
            cleaned["recipient"] = ""   # the robot and the webhook have no recipient of their own
        if channel != Notification.Channel.DINGTALK or not cleaned.get("delivery"):
            cleaned["delivery"] = Notification.Delivery.AT_LEAST_ONCE
        return cleaned
