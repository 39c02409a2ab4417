"""Reports get an owner, a random id (UUID), a short failure message with an
error id instead of the exception's text, and a heartbeat.

The old table is dropped and made anew: its numeric ids cannot become UUIDs,
and its rows had no owner. The reports were throwaway demo output; their CSV
files stay in MEDIA_ROOT/reports/ until deleted by hand.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("reports", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.DeleteModel(name="Report"),
        migrations.CreateModel(
            name="Report",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("title", models.CharField(max_length=100, verbose_name="标题")),
                ("rows", models.PositiveSmallIntegerField(default=5, verbose_name="行数")),
                ("fail_on_purpose", models.BooleanField(default=False, verbose_name="故意失败（演示用）")),
                ("status", models.CharField(choices=[("pending", "排队中"), ("running", "生成中"), ("done", "已完成"), ("failed", "失败")], default="pending", max_length=10, verbose_name="状态")),
                ("progress", models.PositiveSmallIntegerField(default=0, verbose_name="进度 (%)")),
                ("message", models.CharField(blank=True, max_length=200, verbose_name="失败说明")),
                ("error_id", models.CharField(blank=True, max_length=32, verbose_name="错误编号")),
                ("file", models.CharField(blank=True, max_length=255, verbose_name="文件（相对 MEDIA_ROOT）")),
                ("task_id", models.CharField(blank=True, max_length=255, verbose_name="任务 ID")),
                ("heartbeat", models.DateTimeField(blank=True, null=True, verbose_name="最近进度")),
                ("created", models.DateTimeField(auto_now_add=True, verbose_name="创建于")),
                ("finished", models.DateTimeField(blank=True, null=True, verbose_name="结束于")),
                ("owner", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="reports", to=settings.AUTH_USER_MODEL, verbose_name="所有者")),
            ],
            options={
                "verbose_name": "报表",
                "verbose_name_plural": "报表",
                "ordering": ["-created"],
            },
        ),
    ]
