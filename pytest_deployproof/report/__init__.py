"""What a run tells: JUnit properties, Allure results, the markdown dashboard."""
