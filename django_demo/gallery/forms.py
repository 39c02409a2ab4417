"""The upload form: the file is judged by its content, never by its name or the
type the browser claims (both are chosen by whoever sends the request)."""

from django import forms

from demo_tasks import images

#: What the page says for each way an upload can be refused (images.BadImage.code).
REFUSED = {
    "empty": "文件是空的。请选一张图片。",
    "too_large": f"文件太大：最多 {images.MAX_UPLOAD_BYTES // (1024 * 1024)} MB。请先把图片缩小一些。",
    "not_an_image": "这不是图片：文件的内容不是任何一种图片格式（改了扩展名也不算）。请上传 JPEG、PNG、WebP 或 GIF。",
    "unsupported_format": "不支持这种图片格式。请上传 JPEG、PNG、WebP 或 GIF。",
    "too_many_pixels": (f"图片的像素太多（最多 {images.MAX_PIXELS // 1_000_000} 百万像素）："
                        "这样的文件可能很小，解码后却要占用几 GB 内存（“解压炸弹”）。"),
    "corrupt": "图片文件已损坏（不完整或格式错误），读不出来。请重新导出或换一张。",
}


class PhotoForm(forms.Form):
    image = forms.FileField(
        label="图片", help_text=f"JPEG、PNG、WebP 或 GIF，最多 {images.MAX_UPLOAD_BYTES // (1024 * 1024)} MB。")

    def clean_image(self):
        upload = self.cleaned_data["image"]
        try:
            upload.info = images.identify(upload)
        except images.BadImage as exc:
            raise forms.ValidationError(REFUSED.get(exc.code, "这个文件不能用作图片。"), code=exc.code) from exc
        finally:
            upload.seek(0)
        return upload
