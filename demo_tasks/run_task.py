# The article's run_task.py. Two ways to run it, each with its matching worker:
#   python -m demo_tasks.run_task   (worker: celery -A demo_tasks.tasks worker)
#   cd demo_tasks && python run_task.py   (worker: cd demo_tasks && celery -A tasks worker)
# The task's name follows the module it is imported from, so the worker must
# import tasks.py under the same name as this script does.
if __package__:
    from .tasks import add
else:
    from tasks import add

result = add.delay(4, 4)
print('Is Task ready: %s' % result.ready())

run_result = result.get(timeout=1)
print("task result: %s" % run_result)
