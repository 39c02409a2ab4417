"""The video form: upload a file, or let FFmpeg generate a test clip."""

from django import forms
from django.conf import settings

HEIGHTS = [(160, "160 像素高"), (240, "240 像素高"), (360, "360 像素高")]


class VideoForm(forms.Form):
    upload = forms.FileField(
        label="视频文件", required=False,
        help_text=f"不选文件，就用 FFmpeg 自带的测试信号生成一段测试片。最多 "
                  f"{settings.VIDEO_MAX_UPLOAD_BYTES // (1024 * 1024)} MB。")
    sample_seconds = forms.FloatField(label="测试片的长度（秒）", initial=60, min_value=1, max_value=120,
                                      required=False)
    height = forms.TypedChoiceField(label="转码后的高度", choices=HEIGHTS, coerce=int, initial=360)

    def clean_upload(self):
        upload = self.cleaned_data.get("upload")
        if upload is not None and upload.size > settings.VIDEO_MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"文件太大：最多 {settings.VIDEO_MAX_UPLOAD_BYTES // (1024 * 1024)} MB。", code="too_large")
        if upload is not None and upload.size == 0:
            raise forms.ValidationError("文件是空的。", code="empty")
        return upload

    def clean(self):
        data = super().clean()
        if not data.get("upload") and not data.get("sample_seconds"):
            raise forms.ValidationError("请选一个视频文件，或者填上测试片的长度。", code="nothing")
        return data
