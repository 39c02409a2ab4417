from django import forms

from .models import Report


class ReportForm(forms.ModelForm):
    class Meta:
        model = Report
        fields = ["title", "rows", "fail_on_purpose"]
        # The title is stripped of spaces by Django; blank -> "这个字段是必填项。"
        # The limits in the HTML too (the server checks them again in clean_rows).
        widgets = {"rows": forms.NumberInput(attrs={"min": 1, "max": 20})}
        help_texts = {
            "rows": "1 到 20 行；每行是任务的一步，每步都会更新进度条。",
            "fail_on_purpose": "勾选后任务会在中途抛出异常，用来观察失败的任务在页面上的样子。",
        }

    def clean_rows(self) -> int:
        rows = self.cleaned_data["rows"]
        if rows is None or not 1 <= rows <= 20:
            raise forms.ValidationError("行数必须在 1 到 20 之间。")
        return rows
