from django import forms

from demo_tasks import wordcount

from .models import WordCount

MAX_PIECES = 20
#: Characters; the whole course's prose is about 120 000 (demo_tasks.wordcount.corpus_files()).
MAX_TEXT = 300_000


class WordCountForm(forms.ModelForm):
    class Meta:
        model = WordCount
        fields = ["text", "pieces", "fail_piece"]
        widgets = {
            "text": forms.Textarea(attrs={"rows": 8, "maxlength": MAX_TEXT}),
            "pieces": forms.NumberInput(attrs={"min": 1, "max": MAX_PIECES}),
            "fail_piece": forms.NumberInput(attrs={"min": 1, "max": MAX_PIECES}),
        }
        help_texts = {
            "text": "任意文字（中文用 jieba 分词）；按段落（空行）切成几段，每段一个任务。",
            "pieces": f"1 到 {MAX_PIECES}；段落比这少时，每个段落一段。",
            "fail_piece": "填一个段号（从 1 数），这一段的任务会抛出异常："
                          "用来观察 chord 的一个成员失败时页面上的样子。",
        }

    def clean_text(self) -> str:
        # A browser sends a textarea's line breaks as CRLF (the HTML standard); paragraphs
        # (wordcount.paragraphs: an empty line between them) are cut at "\n".
        text = self.cleaned_data["text"].replace("\r\n", "\n")
        if len(text) > MAX_TEXT:
            raise forms.ValidationError(f"文本最多 {MAX_TEXT} 个字符。")
        return text

    def clean_pieces(self) -> int:
        pieces = self.cleaned_data["pieces"]
        if pieces is None or not 1 <= pieces <= MAX_PIECES:
            raise forms.ValidationError(f"段数必须在 1 到 {MAX_PIECES} 之间。")
        return pieces

    def clean(self):
        cleaned = super().clean()
        text, pieces = cleaned.get("text"), cleaned.get("pieces")
        if text and pieces:
            # The pieces the tasks will count (wordcount.split: between paragraphs, never
            # more pieces than paragraphs); the row keeps how many there really are.
            cleaned["pieces"] = len(wordcount.split(text, pieces))
            fail_piece, count = cleaned.get("fail_piece"), cleaned["pieces"]
            if fail_piece is not None and not 1 <= fail_piece <= count:
                self.add_error("fail_piece", f"这段文字切成了 {count} 段：段号要在 1 到 {count} 之间。")
        return cleaned
